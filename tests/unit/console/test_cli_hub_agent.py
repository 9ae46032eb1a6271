"""`gamenode hub` with gRPC and agent flags (its ready line from a real process), and `gamenode agent ...`
handing its argv to agent.cli."""

from __future__ import annotations

import re
import signal
import socket
import subprocess
import sys
import types
from pathlib import Path

import pytest

from console import cli


@pytest.fixture(autouse=True)
def _no_gamenode_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("GAMENODE_CONFIG", "GAMENODE_DATA_DIR", "GAMENODE_HTTP_LISTEN", "GAMENODE_GRPC_LISTEN",
                 "GAMENODE_AGENT_LISTEN", "GAMENODE_INSECURE", "GAMENODE_DEBUG"):
        monkeypatch.delenv(name, raising=False)


def test_agent_gets_the_rest_of_the_command_line(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[list[str] | None] = []
    fake = types.ModuleType("agent.cli")
    fake.main = lambda argv: seen.append(argv) or 7  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "agent.cli", fake)
    assert cli.main(["agent", "--hub", "h:7070", "--help"]) == 7
    assert seen == [["--hub", "h:7070", "--help"]]


def test_agent_missing_is_a_clear_error(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    def missing(name: str) -> None:
        raise ModuleNotFoundError(f"No module named {name!r}", name=name)

    monkeypatch.setattr(cli.importlib, "import_module", missing)
    assert cli.main(["agent", "--once"]) == 1
    assert "node agent is not part of this installation" in capsys.readouterr().err


def test_agent_is_listed_in_the_help(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        cli.main(["--help"])
    out = capsys.readouterr().out
    assert "agent" in out and "hub" in out


@pytest.mark.parametrize("listen", ["nonsense", "127.0.0.1:99999"])
def test_bad_grpc_listen_exits_1(tmp_path: Path, capsys: pytest.CaptureFixture[str], listen: str) -> None:
    code = cli.main(["hub", "--data-dir", str(tmp_path / "d"), "--http-listen", "127.0.0.1:0", "--grpc-listen", listen])
    assert code == 1
    err = capsys.readouterr().err
    assert err.startswith("gamenode: error: ") and "HOST:PORT" in err


def test_grpc_address_in_use_exits_1(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        code = cli.main(["hub", "--data-dir", str(tmp_path / "d"), "--http-listen", "127.0.0.1:0",
                         "--grpc-listen", f"127.0.0.1:{port}"])
    assert code == 1
    assert capsys.readouterr().err.startswith(f"gamenode: error: cannot listen on 127.0.0.1:{port}")


@pytest.mark.parametrize("listen", ["nonsense", "127.0.0.1:99999"])
def test_bad_agent_listen_exits_1(tmp_path: Path, capsys: pytest.CaptureFixture[str], listen: str) -> None:
    code = cli.main(["hub", "--data-dir", str(tmp_path / "d"), "--http-listen", "127.0.0.1:0",
                     "--agent-listen", listen])
    assert code == 1
    err = capsys.readouterr().err
    assert err.startswith("gamenode: error: ") and "HOST:PORT" in err


def test_agent_address_in_use_exits_1(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        code = cli.main(["hub", "--data-dir", str(tmp_path / "d"), "--http-listen", "127.0.0.1:0",
                         "--grpc-listen", "127.0.0.1:0", "--agent-listen", f"127.0.0.1:{port}"])
    assert code == 1
    assert capsys.readouterr().err.startswith(f"gamenode: error: cannot listen on 127.0.0.1:{port}")


READY = re.compile(r"REST API on (http://\S+) .*\bgRPC on (\S+?), agents on (\S+) \((mTLS|plaintext)\), data in ")


@pytest.mark.parametrize("insecure", [False, True])
def test_the_ready_line_names_where_agents_stream(tmp_path: Path, insecure: bool) -> None:
    """A real `gamenode hub` process: its ready line, the CA files it made, a warning when --insecure."""
    argv = [sys.executable, "-m", "console.cli", "hub", "--data-dir", str(tmp_path / "d"),
            "--http-listen", "127.0.0.1:0", "--grpc-listen", "127.0.0.1:0", *(["--insecure"] if insecure else [])]
    hub = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert hub.stdout is not None
        line = hub.stdout.readline()
        ready = READY.search(line)
        assert ready, line
        grpc_address, agent_address, mode = ready.group(2), ready.group(3), ready.group(4)
        if insecure:
            assert (mode, agent_address) == ("plaintext", grpc_address)
        else:
            assert mode == "mTLS" and agent_address != grpc_address and agent_address.startswith("127.0.0.1:")
        assert (tmp_path / "d" / "ca.pem").is_file() and (tmp_path / "d" / "hub.pem").is_file()
    finally:
        hub.send_signal(signal.SIGTERM)
        _, err = hub.communicate(timeout=60)
    assert hub.returncode == 0, err
    assert ("WARNING" in err and "--insecure" in err) is insecure
