"""`gamenode rollout`, `gamenode nodes add`, `gamenode ssh trust` against a hub's REST API served by uvicorn
in the test's loop (a fake runner in place of `bootstrap.Rollout`); the CLI runs in a worker thread."""

from __future__ import annotations

import asyncio
import socket
import sys
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import uvicorn

from console import cli, cli_rollout
from console.hub.runtime import HubRuntime
from console.service import Services
from console.settings import HubSettings
from console.store import Stores

sys.path.insert(0, str(Path(__file__).resolve().parent / "service"))
from rollout_fakes import FakeRunner, fake_bundle

WAIT = 10.0


@dataclass
class Served:
    url: str
    services: Services
    data_dir: Path

    async def gamenode(self, *argv: str) -> int:
        """`gamenode ARGV --hub URL --data-dir DIR` in a worker thread (the hub answers on this loop); the
        command finds the hub's admin token in DIR."""
        argv = (*argv, "--hub", self.url, "--data-dir", str(self.data_dir))
        return await asyncio.wait_for(asyncio.to_thread(cli.main, list(argv)), WAIT)


@pytest.fixture(autouse=True)
def _quiet(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("GAMENODE_HUB_URL", raising=False)
    monkeypatch.delenv("GAMENODE_TOKEN", raising=False)
    monkeypatch.setattr(cli_rollout, "POLL_INTERVAL", 0.01)


@pytest.fixture
async def served(tmp_path: Path) -> AsyncIterator[Served]:
    stores = Stores.open(tmp_path / "data")
    services = Services.over(stores)
    services.rollouts.bundle_source = fake_bundle
    runtime = HubRuntime(services, HubSettings(data_dir=tmp_path / "data", grpc_listen="127.0.0.1:0"))
    await runtime.start("127.0.0.1:0", monitor_period=3600)
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(runtime.app(), log_level="warning", lifespan="off"))
    serving = asyncio.create_task(server.serve(sockets=[sock]))
    while not server.started:
        await asyncio.sleep(0.01)
    yield Served(f"http://127.0.0.1:{sock.getsockname()[1]}", services, tmp_path / "data")
    server.should_exit = True
    await serving
    sock.close()
    await runtime.stop(grace=0)
    stores.close()


def node_args(**ssh: Any) -> list[str]:
    return ["--ssh-host", "127.0.0.1", *[f"--{k.replace('_', '-')}={v}" for k, v in ssh.items()]]


async def test_nodes_add_with_ssh_and_labels(served: Served, capsys: pytest.CaptureFixture[str]) -> None:
    code = await served.gamenode("nodes", "add", "n1", *node_args(ssh_port=2201, ssh_user="ops", prefix="/srv/gn"),
                                 "--sudo", "--identity", "key", "--label", "region=eu", "--label", "rack=r1")
    assert code == 0
    node = served.services.nodes.get_node("n1")
    assert node.labels == {"region": "eu", "rack": "r1"} and node.ssh is not None
    assert (node.ssh.host, node.ssh.port, node.ssh.user, node.ssh.prefix, node.ssh.sudo) == (
        "127.0.0.1", 2201, "ops", "/srv/gn", True)
    assert node.ssh.identity_file == str(Path("key").resolve())
    assert "added node n1: ssh ops@127.0.0.1:2201" in capsys.readouterr().out


async def test_nodes_add_errors_are_one_line(served: Served, capsys: pytest.CaptureFixture[str]) -> None:
    assert await served.gamenode("nodes", "add", "n1", *node_args(prefix="/")) == 1
    assert "ssh.prefix" in capsys.readouterr().err
    assert await served.gamenode("nodes", "add", "n1", *node_args(), "--label", "nonsense") == 1
    assert "--label: expected KEY=VALUE" in capsys.readouterr().err


async def test_rollout_prints_progress_and_the_summary(
    served: Served, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    await served.gamenode("nodes", "add", "a", *node_args(ssh_port=2201))
    served.services.rollouts.runner = FakeRunner()
    monkeypatch.setattr(cli_rollout, "summary", lambda record: "TABLE")
    code = await served.gamenode("rollout", "--nodes", "a", "--parallel", "2", "--canary", "1")
    out = capsys.readouterr().out
    assert code == 0, out
    assert "rollout ro-" in out and "a                connect    succeeded" in out
    assert "a                result     installed (1.5s)" in out
    assert out.rstrip().endswith("TABLE")


async def test_rollout_adds_unknown_nodes_and_exits_1_when_a_host_failed(
    served: Served, capsys: pytest.CaptureFixture[str]
) -> None:
    served.services.rollouts.runner = FakeRunner({"b": "failed"})
    code = await served.gamenode("rollout", "--nodes", "a@127.0.0.1:2201,b@10.1.1.1", "--ssh-user", "ops")
    assert code == 1
    a, b = served.services.nodes.get_node("a").ssh, served.services.nodes.get_node("b").ssh
    assert a is not None and (a.host, a.port, a.user) == ("127.0.0.1", 2201, "ops")
    assert b is not None and (b.host, b.port) == ("10.1.1.1", 22)
    out = capsys.readouterr().out
    assert "b                result     failed (1.5s): boom" in out
    table = out[out.index("NODE"):].splitlines()  # the bootstrap's summary table
    assert table[1].split() == ["a", "127.0.0.1:2201", "-", "9.9.9", "installed", "1.5s"]
    assert table[2].split() == ["b", "10.1.1.1:22", "-", "9.9.9", "failed", "1.5s"]
    assert "2 hosts: 1 failed, 1 installed" in out


async def test_rollout_refused_by_the_hub(served: Served, capsys: pytest.CaptureFixture[str]) -> None:
    assert await served.gamenode("rollout", "--selector", "region=mars", "--uninstall") == 1
    assert "gamenode: error: no node selected" in capsys.readouterr().err


async def test_ctrl_c_asks_the_hub_to_cancel_and_exits_130(
    served: Served, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    await served.gamenode("nodes", "add", "a", *node_args())
    runner = served.services.rollouts.runner = FakeRunner(hold=True)
    real_follow = cli_rollout.follow

    def interrupted(client: cli_rollout.HubClient, record: dict[str, Any], sleep: Callable[[float], None]) -> Any:
        def ctrl_c(seconds: float) -> None:
            if runner.started.is_set():
                raise KeyboardInterrupt
        return real_follow(client, record, ctrl_c)

    monkeypatch.setattr(cli_rollout, "follow", interrupted)
    assert await served.gamenode("rollout", "--nodes", "a") == 130
    err = capsys.readouterr().err
    assert "asked the hub to cancel rollout ro-" in err
    record = served.services.rollouts.list_rollouts().items[0]
    while not record.state.finished:
        await asyncio.sleep(0.01)
        record = served.services.rollouts.get(record.id)
    assert record.state == "cancelled"


async def test_ssh_trust_asks_first(served: Served, monkeypatch: pytest.MonkeyPatch,
                                    capsys: pytest.CaptureFixture[str]) -> None:
    await served.gamenode("nodes", "add", "a", *node_args(ssh_port=2201))

    class Key:
        algorithm = b"ssh-ed25519"
        public_data = b"\x00\x00\x00\x0bssh-ed25519" + bytes(36)

    async def host_key(node: Any, known_hosts: Path, timeout: float) -> Key:
        return Key()

    served.services.rollouts.host_keys = host_key
    monkeypatch.setattr("builtins.input", lambda prompt: "n")
    assert await served.gamenode("ssh", "trust", "a") == 1
    out = capsys.readouterr()
    assert "presents host key SHA256:" in out.out and "(unknown to the hub)" in out.out
    assert "not trusted" in out.err
    assert await served.gamenode("ssh", "trust", "a", "--yes") == 0
    assert "trusted SHA256:" in capsys.readouterr().out
    assert await served.gamenode("ssh", "trust", "a") == 0
    assert "already trusted" in capsys.readouterr().out


async def test_an_unreachable_hub_is_a_clear_error(capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    code = await asyncio.to_thread(cli.main, ["rollout", "--all-without-agent", "--hub", f"http://127.0.0.1:{port}"])
    assert code == 1
    assert "cannot reach the hub at http://127.0.0.1:" in capsys.readouterr().err
