"""`container.run`'s inputs as docker SDK options (the daemon side is in tests/integration/docker)."""

from __future__ import annotations

from pathlib import Path

import pytest
from action_helpers import make_ctx

from agent.errors import StepFailed
from agent.pipeline.actions import ACTION_RUNNERS
from agent.pipeline.actions.container import run_options
from agent.pipeline.inputs import ACTIONS, ContainerRun


def test_every_action_has_a_runner() -> None:
    assert set(ACTION_RUNNERS) == set(ACTIONS)


def test_options_map_every_input(tmp_path: Path) -> None:
    ctx = make_ctx(tmp_path)
    inputs = ContainerRun.model_validate({
        "image": "reg/game:1", "command": ["./server", "--port", "8080"], "entrypoint": "/entry",
        "env": {"A": "x", "N": 3, "B": False, "L": [1, 2]}, "network": "games",
        "ports": [{"container_port": 8080, "host_port": 20001}, {"container_port": 8080, "host_port": 20002,
                                                                 "host_ip": "127.0.0.1"},
                  {"container_port": 27015, "host_port": 20003, "protocol": "udp"}],
        "volumes": {"maps": "/maps:ro", "/srv/shared": "/shared"}, "data_mount": "/data",
        "cpus": 1.5, "memory_mb": 512, "gpus": -1, "restart": "unless-stopped",
        "labels": {"team": "blue", "gamenode.run": "forged"},
    })
    options = run_options(ctx, inputs)
    assert options["command"] == ["./server", "--port", "8080"] and options["entrypoint"] == "/entry"
    assert options["environment"] == {"A": "x", "N": "3", "B": "false", "L": "[1, 2]"}
    assert options["ports"] == {"8080/tcp": [("0.0.0.0", 20001), ("127.0.0.1", 20002)],
                                "27015/udp": [("0.0.0.0", 20003)]}
    assert options["volumes"] == {str(ctx.data_dir / "maps"): {"bind": "/maps", "mode": "ro"},
                                  "/srv/shared": {"bind": "/shared", "mode": "rw"},
                                  str(ctx.data_dir): {"bind": "/data", "mode": "rw"}}
    assert options["nano_cpus"] == 1_500_000_000 and options["mem_limit"] == "512m"
    assert options["device_requests"][0]["Count"] == -1 and options["device_requests"][0]["Capabilities"] == [["gpu"]]
    assert options["restart_policy"] == {"Name": "unless-stopped", "MaximumRetryCount": 0}
    assert options["network"] == "games"
    assert options["labels"] == {"team": "blue", "gamenode.run": "run-1", "gamenode.instance": "inst-1",
                                 "gamenode.node": "node-1", "gamenode.managed": "true"}


def test_minimal_options_leave_the_defaults_to_docker(tmp_path: Path) -> None:
    options = run_options(make_ctx(tmp_path), ContainerRun(image="game"))
    assert set(options) == {"environment", "labels", "ports", "volumes"}


def test_a_bad_volume_mode_or_escaping_path_is_refused(tmp_path: Path) -> None:
    ctx = make_ctx(tmp_path)
    with pytest.raises(StepFailed, match="the mode must be ro or rw"):
        run_options(ctx, ContainerRun(image="game", volumes={"maps": "/maps:rx"}))
    with pytest.raises(StepFailed, match="leads out"):
        run_options(ctx, ContainerRun(image="game", volumes={"../../etc": "/etc"}))


def test_default_names(tmp_path: Path) -> None:
    assert make_ctx(tmp_path).container_name == "gn-inst-1"
    assert make_ctx(tmp_path, instance_id="").container_name == "gn-run-run-1"
    assert make_ctx(tmp_path, instance_id="").owner == "run-run-1"
