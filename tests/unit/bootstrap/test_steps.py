"""The host-side pieces run locally: the systemd unit, the supervisor script, the prefix guard, agent.env."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from testbed.docker import testbed_missing as missing_tool

from bootstrap.errors import BootstrapError
from bootstrap.scripts import check_prefix
from bootstrap.steps import agent_env, supervisor_script, unit_file


def _wait(condition: Callable[[], bool], timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.02)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return not Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] == "Z"


def _fake_prefix(tmp_path: Path, agent: str) -> Path:
    prefix = tmp_path / "gamenode"
    python = prefix / "agent" / "1.0" / "bin" / "python"
    python.parent.mkdir(parents=True)
    python.write_text("#!/bin/sh\n" + agent)
    python.chmod(0o755)
    (prefix / "agent" / "current").symlink_to("1.0")
    (prefix / "etc").mkdir()
    (prefix / "etc" / "agent.env").write_text(agent_env(str(prefix), "n1", "hub:7070"))
    script = prefix / "bin" / "gamenode-supervise"
    script.parent.mkdir()
    script.write_text(supervisor_script())
    script.chmod(0o755)
    return prefix


def _supervise(prefix: Path, command: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "GAMENODE_SUPERVISE_BACKOFF": "0.05", "GAMENODE_SUPERVISE_GRACE": "2"}
    return subprocess.run([str(prefix / "bin" / "gamenode-supervise"), command], env=env, capture_output=True,
                          text=True, timeout=30, check=False)


def test_unit_file_passes_systemd_analyze(tmp_path: Path) -> None:
    prefix = tmp_path / "gamenode"
    python = prefix / "agent" / "current" / "bin" / "python"
    python.parent.mkdir(parents=True)
    python.symlink_to(shutil.which("python3") or "/usr/bin/python3")
    (prefix / "etc").mkdir()
    (prefix / "etc" / "agent.env").write_text(agent_env(str(prefix), "n1", "hub:7070"))
    text = unit_file(str(prefix))
    assert f"ExecStart={prefix}/agent/current/bin/python -m agent" in text
    assert f"EnvironmentFile={prefix}/etc/agent.env" in text
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        missing_tool("systemd-analyze not installed (Debian: systemd)")
    unit = tmp_path / "gamenode-agent.service"
    unit.write_text(text)
    done = subprocess.run([analyze, "verify", "--man=no", str(unit)], capture_output=True, text=True, check=False)
    problems = [line for line in done.stderr.splitlines() if "gamenode-agent" in line]
    assert done.returncode == 0 and not problems, done.stderr


def test_supervisor_restarts_a_crashing_agent_and_stops_cleanly(tmp_path: Path) -> None:
    prefix = _fake_prefix(tmp_path, 'echo "start $GAMENODE_AGENT_NODE_ID $*"\nexit 3\n')
    assert _supervise(prefix, "start").returncode == 0
    log = prefix / "log" / "agent.log"
    _wait(lambda: log.exists() and log.read_text().count("start n1 -m agent") >= 3)
    supervisor = int((prefix / "run" / "supervisor.pid").read_text())
    assert _supervise(prefix, "stop").returncode == 0
    _wait(lambda: not _alive(supervisor))
    assert not (prefix / "run" / "supervisor.pid").exists()
    assert "agent exited (3)" in (prefix / "log" / "supervisor.log").read_text()


def test_supervisor_keeps_a_healthy_agent_and_stop_kills_it(tmp_path: Path) -> None:
    prefix = _fake_prefix(tmp_path, 'trap "exit 0" TERM\necho up\nwhile :; do sleep 0.05; done\n')
    assert _supervise(prefix, "start").returncode == 0
    assert _supervise(prefix, "start").returncode == 0  # idempotent
    _wait(lambda: (prefix / "run" / "agent.pid").exists())
    agent = int((prefix / "run" / "agent.pid").read_text())
    supervisor = int((prefix / "run" / "supervisor.pid").read_text())
    assert _supervise(prefix, "status").returncode == 0
    assert _supervise(prefix, "restart").returncode == 0
    _wait(lambda: not _alive(agent) and not _alive(supervisor))
    _wait(lambda: (prefix / "run" / "agent.pid").exists())
    new_agent = int((prefix / "run" / "agent.pid").read_text())
    assert new_agent != agent
    assert _supervise(prefix, "stop").returncode == 0
    _wait(lambda: not _alive(new_agent))
    assert _supervise(prefix, "status").returncode != 0
    assert not list((prefix / "run").iterdir())


@pytest.mark.parametrize("prefix", ["", "/", "relative/gamenode", "/opt", "/usr/", "/opt/app", "//gamenode", "/tmp"])
def test_prefix_guard_refuses(prefix: str) -> None:
    with pytest.raises(BootstrapError, match="refused"):
        check_prefix(prefix)


def test_prefix_guard_accepts_and_normalizes() -> None:
    assert check_prefix("/opt/gamenode/") == "/opt/gamenode"
    assert check_prefix("/srv/x/../gamenode-test") == "/srv/gamenode-test"


def test_agent_env_is_quoted_for_sh_and_systemd() -> None:
    text = agent_env("/opt/gamenode", "n1", "hub:7070", ca_file="/opt/game node/ca.pem")
    assert "GAMENODE_AGENT_HUB=hub:7070\n" in text
    assert "GAMENODE_AGENT_TOKEN=@/opt/gamenode/etc/token\n" in text
    assert "GAMENODE_AGENT_CA_FILE='/opt/game node/ca.pem'\n" in text
