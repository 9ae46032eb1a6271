"""The host-side pieces run locally: the systemd unit, the supervisor script, the prefix guard, agent.env, and the
identity files configure writes and preflight reads (the CA, the join token, whether the agent joined)."""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import stat
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from testbed.docker import testbed_missing as missing_tool

from bootstrap.errors import BootstrapError
from bootstrap.rollout import HostTarget, RolloutOptions
from bootstrap.scripts import check_prefix, configure_script, preflight_script
from bootstrap.steps import Facts, RemoteHost, agent_env, supervisor_script, unit_file
from console.models import SshAccess


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


def test_agent_env_of_an_insecure_hub_gets_insecure_and_no_ca() -> None:
    text = agent_env("/opt/gamenode", "n1", "hub:7070", insecure=True)
    assert "GAMENODE_AGENT_INSECURE=1\n" in text
    assert "GAMENODE_AGENT_CA_FILE" not in text
    assert "GAMENODE_AGENT_INSECURE" not in agent_env("/opt/gamenode", "n1", "hub:7070", ca_file="/x/ca.pem")


# --- the identity files: the CA (public), the join token (private), enrollment seen by preflight -------------

CA_PEM = b"-----BEGIN CERTIFICATE-----\nMIIB(the hub's CA)\n-----END CERTIFICATE-----\n"


def _sh(script: str) -> str:
    done = subprocess.run(["sh", "-s"], input=script, capture_output=True, text=True, timeout=30, check=False)
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_configure_writes_the_ca_public_and_the_rest_private(tmp_path: Path) -> None:
    prefix = tmp_path / "gamenode"
    _sh(configure_script(str(prefix), {"etc/agent.env": "A=1\n", "etc/ca.pem": CA_PEM.decode(),
                                       "etc/token": "id.secret\n"}, public={"etc/ca.pem"}))
    modes = {name: stat.S_IMODE((prefix / name).stat().st_mode) for name in ("etc/agent.env", "etc/ca.pem",
                                                                              "etc/token")}
    assert modes == {"etc/agent.env": 0o600, "etc/ca.pem": 0o644, "etc/token": 0o600}
    assert (prefix / "etc" / "ca.pem").read_bytes() == CA_PEM
    assert sorted(p.name for p in (prefix / "etc").iterdir()) == ["agent.env", "ca.pem", "token"]


def test_preflight_reports_the_ca_and_whether_the_agent_joined(tmp_path: Path) -> None:
    prefix = tmp_path / "gamenode"
    (prefix / "etc").mkdir(parents=True)

    def facts() -> dict[str, str]:
        out = _sh(preflight_script(str(prefix), "python3", "1.0", "0" * 64))
        return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)

    assert "ca_sha" not in facts() and "enrolled" not in facts()
    (prefix / "etc" / "ca.pem").write_bytes(CA_PEM)
    (prefix / "state" / "identity").mkdir(parents=True)
    (prefix / "state" / "identity" / "cert.pem").write_text("(a certificate)")
    assert facts()["ca_sha"] == hashlib.sha256(CA_PEM).hexdigest()
    assert facts()["enrolled"] == "1"


class ScriptedHost(RemoteHost):
    """`RemoteHost` whose scripts are recorded (and answered) instead of run over SSH."""

    def __init__(self, target: HostTarget, facts: Facts) -> None:
        super().__init__(target, RolloutOptions(), logging.LoggerAdapter(logging.getLogger("test")))
        self._facts = facts
        self.scripts: list[str] = []

    async def _sh(self, script: str) -> str:
        self.scripts.append(script)
        return ""


def _target(ca_pem: bytes | None, issued: list[str]) -> HostTarget:
    async def issue(node_id: str) -> str:
        issued.append(node_id)
        return f"{node_id}id.new-join-token"

    return HostTarget("n1", SshAccess(host="h", prefix="/opt/gamenode"), "hub:7070", issue, ca_pem=ca_pem)


async def test_configure_delivers_the_ca_and_a_token_to_a_host_whose_agent_has_not_joined() -> None:
    issued: list[str] = []
    host = ScriptedHost(_target(CA_PEM, issued), Facts(token_present=True, enrolled=False))
    message = await host.configure()
    assert message == "wrote etc/agent.env, etc/ca.pem, etc/token"
    assert issued == ["n1"]
    script = host.scripts[0]
    assert "chmod 644 \"$P\"/etc/ca.pem.tmp" in script and "chmod 600 \"$P\"/etc/token.tmp" in script
    assert "GAMENODE_AGENT_CA_FILE=/opt/gamenode/etc/ca.pem" in script
    assert "GAMENODE_AGENT_INSECURE" not in script


async def test_configure_keeps_the_token_of_an_enrolled_agent_and_an_insecure_hub_gets_insecure() -> None:
    issued: list[str] = []
    host = ScriptedHost(_target(None, issued), Facts(token_present=True, enrolled=True))
    assert await host.configure() == "wrote etc/agent.env"
    assert issued == []
    assert "GAMENODE_AGENT_INSECURE=1" in host.scripts[0] and "ca.pem" not in host.scripts[0]


def test_config_is_current_only_with_the_same_ca_and_an_enrolled_agent() -> None:
    host = ScriptedHost(_target(CA_PEM, []), Facts())
    same = {"config_sha": hashlib.sha256(host._env().encode()).hexdigest(),
            "ca_sha": hashlib.sha256(CA_PEM).hexdigest(), "token_sha": "x", "enrolled": "1"}
    assert host._config_current(same)
    assert not host._config_current({**same, "ca_sha": "0" * 64})  # the hub's CA changed
    assert not host._config_current({k: v for k, v in same.items() if k != "enrolled"})  # not joined yet
    assert not host._config_current({k: v for k, v in same.items() if k != "token_sha"})
