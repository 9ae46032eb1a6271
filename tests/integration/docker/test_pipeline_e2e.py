"""Pipelines end to end: a real hub process, a real agent process, a real dockerd and a local registry.

Game instances are launched over REST (`POST /api/v1/instances`): the hub
places them, runs `config/pipeline/platform-start.yaml` on the agent, and the
agent pulls the busybox image from the loopback registry, allocates a host
port, runs the container and waits until it answers. Faults: a missing image,
a health check that never passes, a cancel during a (throttled) pull, the agent
killed mid-run and restarted, the hub killed mid-run and restarted. Nothing
here asserts a duration: every wait polls with a generous timeout.
"""

from __future__ import annotations

import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fleet_helpers import Fleet
from pipeline_helpers import Stage, http_get, push_big_image, slow_registry
from testbed.docker import GameImage, Registry

pytestmark = [pytest.mark.docker, pytest.mark.slow]

SLOW_WAIT = ["sh", "-c", "trap 'exit 0' TERM; sleep 3; echo game is ready; httpd -f -p 8080 -h /www & wait"]
"""A game that takes a few seconds before it says it is ready (time to kill something meanwhile), and that
stops on SIGTERM (busybox httpd as PID 1 would ignore it until Docker's SIGKILL)."""


@pytest.fixture
def stage(tmp_path: Path, docker_client: Any, game_image: GameImage) -> Iterator[Stage]:
    fleet = Fleet(tmp_path)
    stage = Stage(fleet, docker_client)
    try:
        yield stage
    finally:
        stage.cleanup()
        fleet.close()


def step(run: dict[str, Any], name: str) -> dict[str, Any]:
    return next(s for s in run["steps"] if s["name"] == name)


def test_platform_start_runs_the_game_and_stop_removes_it(stage: Stage, game_image: GameImage) -> None:
    node = stage.node()
    launched = stage.launch(game_image.v1)
    instance_id = launched["instance"]["id"]
    assert launched["instance"]["node_id"] == node

    run = stage.wait_run(launched["run_id"], "succeeded")
    states = {s["name"]: s["state"] for s in run["steps"]}
    assert {states[name] for name in ("pull", "network", "run", "wait-tcp")} == {"succeeded"}, states
    assert {states[name] for name in ("data", "config", "wait-http", "wait-log")} == {"skipped"}, states
    instance = stage.wait_instance(instance_id, "running")
    (port,) = [p["host_port"] for p in instance["ports"]]
    assert "tiny game 1" in http_get(port)
    (container,) = stage.containers(instance_id)
    assert container.id == instance["container_id"]
    assert container.labels["gamenode.run"] == launched["run_id"]

    pull_lines = stage.logs(run=launched["run_id"])
    assert pull_lines and all(line["node_id"] == node for line in pull_lines)
    assert any(game_image.v1 in line["text"] for line in pull_lines), pull_lines

    r = stage.fleet.api.delete(f"/api/v1/instances/{instance_id}")
    assert r.status_code == 202, r.text
    stage.wait_run(r.json()["run_id"], "succeeded")
    assert stage.wait_instance(instance_id, "stopped")["error"] in (None, "")
    assert stage.containers(instance_id) == []
    assert http_get(port) == ""
    assert stage.free(node)["live"] == 0


def test_a_missing_image_fails_at_pull_with_the_registrys_reason(stage: Stage, registry: Registry) -> None:
    node = stage.node()
    launched = stage.launch(f"{registry.address}/game/nosuch:1")

    run = stage.wait_run(launched["run_id"], "failed", timeout=90)
    pull = step(run, "pull")
    assert pull["state"] == "failed"
    assert "not found" in pull["message"].lower() or "unknown" in pull["message"].lower(), pull
    assert "pull" in run["error"]
    instance = stage.wait_instance(launched["instance"]["id"], "failed")
    assert instance["error"]
    assert stage.free(node) == {"live": 0, "cpu": 0}
    assert stage.containers(launched["instance"]["id"]) == []


def test_a_health_timeout_runs_on_failure_and_removes_the_container(stage: Stage, game_image: GameImage) -> None:
    stage.node()
    launched = stage.launch(game_image.v1, health="log", health_log="never printed", health_timeout="2s")

    run = stage.wait_run(launched["run_id"], "failed")
    assert step(run, "wait-log")["state"] == "failed"
    assert "timed out" in step(run, "wait-log")["message"]
    assert step(run, "remove")["state"] == "succeeded"
    stage.wait_instance(launched["instance"]["id"], "failed")
    assert stage.containers(launched["instance"]["id"]) == []


def test_cancel_during_a_pull_stops_it_and_releases_the_instance(
    stage: Stage, docker_client: Any, registry: Registry
) -> None:
    node = stage.node()
    ref = push_big_image(docker_client, f"{registry.address}/game/tiny", size_mb=24)
    with slow_registry(registry.address, rate=1024 * 1024) as proxy:
        slow_ref = ref.replace(registry.address, proxy.address)
        launched = stage.launch(slow_ref)
        run_id = launched["run_id"]
        stage.wait_step(run_id, "pull", "running", progress=1)

        r = stage.fleet.api.post(f"/api/v1/runs/{run_id}/cancel", json={"reason": "operator changed their mind"})
        assert r.status_code == 200, r.text
        run = stage.wait_run(run_id, "cancelled")
    assert step(run, "pull")["state"] == "cancelled"
    assert step(run, "run")["state"] in ("cancelled", "pending")
    instance = stage.wait_instance(launched["instance"]["id"], "failed")
    assert "cancel" in instance["error"] and "operator changed their mind" in instance["error"]
    assert stage.free(node)["live"] == 0
    assert stage.containers(launched["instance"]["id"]) == []


def test_an_agent_killed_mid_run_resumes_without_a_second_container(stage: Stage, game_image: GameImage) -> None:
    node = stage.node()
    launched = stage.launch(game_image.v1, command=SLOW_WAIT, health="log", health_log="game is ready")
    run_id, instance_id = launched["run_id"], launched["instance"]["id"]
    stage.wait_step(run_id, "wait-log", "running")
    (agent,) = stage.fleet.agents
    agent.signal(signal.SIGKILL)
    agent.wait()

    stage.fleet.start_agent(node, None, name="agent-again", home=agent.state_dir.parent)  # its identity, no token
    run = stage.wait_run(run_id, "succeeded")
    assert step(run, "run")["state"] == "succeeded"
    stage.wait_instance(instance_id, "running")
    assert len(stage.containers(instance_id)) == 1
    assert any("resumed" in line["text"] for line in stage.logs(run=run_id))


def test_a_hub_killed_mid_run_ends_with_the_right_state(stage: Stage, game_image: GameImage) -> None:
    from fleet_helpers import free_port

    grpc_port = free_port()
    stage.fleet.start_hub(grpc_port)
    stage.node()
    launched = stage.launch(game_image.v1, command=SLOW_WAIT, health="log", health_log="game is ready")
    run_id, instance_id = launched["run_id"], launched["instance"]["id"]
    stage.wait_step(run_id, "wait-log", "running")
    stage.fleet.hub.signal(signal.SIGKILL)
    stage.fleet.hub.wait()

    stage.fleet.start_hub(grpc_port)
    run = stage.wait_run(run_id, "succeeded")
    assert step(run, "wait-log")["state"] == "succeeded"
    instance = stage.wait_instance(instance_id, "running")
    assert len(stage.containers(instance_id)) == 1
    assert "tiny game 1" in http_get(instance["ports"][0]["host_port"])


def test_invalid_pipelines_are_refused_with_every_path_and_line(stage: Stage) -> None:
    node = stage.node()
    bad = "\n".join([
        "apiVersion: gamenode/v1",
        "kind: Pipeline",
        "metadata: {name: bad}",
        "params:",
        "  image: {type: string, required: true}",
        "steps:",
        "  - name: pull",
        "    action: image.pul",
        "  - name: run",
        "    action: container.run",
        "    with: {image: '${params.imag}', colour: red}",
        "    timeout: soon",
    ])
    r = stage.fleet.api.post(f"/api/v1/nodes/{node}/pipelines", json={"yaml": bad, "params": {"image": "x"}})
    assert r.status_code == 422, r.text
    details = {(d["path"], d.get("line")) for d in r.json()["details"]}
    paths = {path for path, _ in details}
    assert any("steps[0].action" in p for p in paths), details
    assert any("steps[1].with" in p and "colour" in p for p in paths), details
    assert any("steps[1].timeout" in p for p in paths), details
    assert any("imag" in str(d) for d in r.json()["details"]), details
    lines = {line for _, line in details}
    assert {8, 11, 12} <= lines, details


def upgrade(stage: Stage, node: str, instance_id: str, image: str, **params: Any) -> dict[str, Any]:
    r = stage.fleet.api.post(f"/api/v1/nodes/{node}/pipelines", json={
        "pipeline": "instance-upgrade", "instance_id": instance_id, "params": {"image": image, **params}})
    assert r.status_code == 201, r.text
    run: dict[str, Any] = r.json()
    return run


def test_upgrade_moves_the_instance_to_the_new_image_then_rolls_back_a_bad_one(
    stage: Stage, game_image: GameImage
) -> None:
    node = stage.node()
    launched = stage.launch(game_image.v1)
    instance_id = launched["instance"]["id"]
    stage.wait_run(launched["run_id"], "succeeded")
    first = stage.wait_instance(instance_id, "running")

    run = upgrade(stage, node, instance_id, game_image.v2, grace=1)
    stage.wait_run(run["id"], "succeeded")
    upgraded = stage.wait_instance(instance_id, "running")
    assert upgraded["container_id"] != first["container_id"]
    (port,) = [p["host_port"] for p in upgraded["ports"]]
    assert "tiny game 2" in http_get(port)
    (container,) = stage.containers(instance_id)
    assert container.id == upgraded["container_id"]

    bad = upgrade(stage, node, instance_id, game_image.v1, health="log", health_log="never printed",
                  health_timeout="2s", grace=1)
    run = stage.wait_run(bad["id"], "failed")
    assert step(run, "wait-log")["state"] == "failed", run["steps"]
    after = stage.wait_instance(instance_id, "running")
    assert after["container_id"] == upgraded["container_id"]
    (container,) = stage.containers(instance_id)
    container.reload()
    assert container.status == "running" and container.id == upgraded["container_id"]
    port = after["ports"][0]["host_port"]
    assert stage.fleet.wait("the old container to answer again", lambda: "tiny game 2" in http_get(port) or None)


def test_a_container_that_dies_marks_its_instance_failed_with_the_exit_code(
    stage: Stage, game_image: GameImage
) -> None:
    node = stage.node()
    launched = stage.launch(game_image.v1, command=SLOW_WAIT, health="log", health_log="game is ready")
    instance_id = launched["instance"]["id"]
    stage.wait_run(launched["run_id"], "succeeded")
    stage.wait_instance(instance_id, "running")
    lines = stage.fleet.wait("the game's own output in the instance's log",
                             lambda: stage.logs(instance=instance_id, q="game is ready") or None)
    assert lines[0]["node_id"] == node and lines[0]["stream"] == "stdout"

    r = stage.fleet.api.post(f"/api/v1/instances/{instance_id}/actions", json={"action": "restart"})
    assert r.status_code == 200, r.text
    assert r.json()["state"] == "running"

    (container,) = stage.containers(instance_id)
    container.kill(signal="SIGKILL")
    failed = stage.wait_instance(instance_id, "failed")
    assert "137" in failed["error"], failed
    assert stage.free(node)["live"] == 0
