"""Agent rollouts end to end: a real hub process rolls real agents out to private sshd "hosts" on loopback.

One hub and three hosts serve the whole module, and the tests build on each other in file order (pytest
keeps it): a fresh install, a no-op rerun (through the CLI), an upgrade, a crashing build rolled back, then
the faults (an unreachable host and a wrong client key next to healthy hosts, an unknown host key on a
fourth host until it is trusted) and an uninstall. A test that needs an earlier one's state asks for it
with `installed(...)`, so each also runs alone (`-k upgrade`).

Every agent runs from its host's prefix under tmp (supervised by `PREFIX/bin/gamenode-supervise`); the
module's teardown kills them (the pids under `PREFIX/run/`, and any process running from the prefix).
The rollout delivers the hub's CA (`PREFIX/etc/ca.pem`) and a join token; each agent makes its key on the
host, joins, and streams over mTLS.
"""

from __future__ import annotations

import os
import re
import stat
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from fleet_helpers import REPO_ROOT, Process, admin_headers, clean_env, free_port, wait_for
from testbed.sshd import (
    AgentBuild,
    AgentBuilds,
    ClientKey,
    SshHost,
    host_python,
    kill_prefix_processes,
    known_hosts_for,
    make_client_key,
    prefix_pids,
)

from console.service.ca import HubCA

pytestmark = [pytest.mark.ssh, pytest.mark.slow, pytest.mark.timeout(240)]

HEARTBEAT_S = 1.0
ROLLOUT_WAIT = 150.0
"""Seconds a rollout may take to finish (generous: nothing here is a timing assertion)."""
CRASH_VERIFY_TIMEOUT = 8.0
"""The rollout's verify timeout for the crashing build: how long its agent has to come online."""
HOSTS = ("n0", "n1", "n2")
_READY = re.compile(r"^gamenode hub: REST API on (http://\S+) .*\bgRPC on (\S+?), ", re.MULTILINE)
_AGENTS = re.compile(r"^gamenode hub: .*\bagents on (\S+) \(mTLS\)", re.MULTILINE)


# --- the hub and the hosts --------------------------------------------------------------


class Hub(Process):
    """`gamenode hub` with a rollout bundle, short heartbeats, and known_hosts seeded with `trusted` hosts."""

    def __init__(self, root: Path, bundle: Path, trusted: list[SshHost]) -> None:
        """A TLS hub: its agents stream over mTLS on its agent port."""
        data_dir = root / "data"
        data_dir.mkdir(parents=True)
        (data_dir / "known_hosts").write_text(known_hosts_for(trusted))
        command = [sys.executable, "-m", "console.cli", "hub", "--data-dir", str(data_dir),
                   "--http-listen", "127.0.0.1:0", "--grpc-listen", "127.0.0.1:0"]
        env = clean_env(GAMENODE_HEARTBEAT_INTERVAL=str(HEARTBEAT_S), GAMENODE_METRICS_INTERVAL=str(HEARTBEAT_S),
                        GAMENODE_LOG_LEVEL="INFO", GAMENODE_ROLLOUT_BUNDLE=str(bundle))
        super().__init__("hub", command, env, root / "hub.log")
        self.data_dir = data_dir
        self.url, self.grpc_address = wait_for("the hub to announce its addresses", self._ready, self.describe)
        agents = _AGENTS.search(self.output())
        assert agents, self.describe()
        self.agent_address = agents.group(1)

    def _ready(self) -> tuple[str, str] | None:
        found = _READY.search(self.output())
        if found:
            return found.group(1), found.group(2)
        assert self.running, f"the hub exited before it was ready\n{self.describe()}"
        return None


@dataclass
class Site:
    """The module's hub, its REST client, the hosts and the builds."""

    hub: Hub
    api: httpx.Client
    hosts: dict[str, SshHost]
    """Node id → its sshd host."""
    builds: AgentBuilds
    key: ClientKey
    installed_version: dict[str, str] = field(default_factory=dict)
    """Node id → the version the tests last left running there."""

    def logs(self) -> str:
        parts = [self.hub.describe()]
        for node_id, host in self.hosts.items():
            for name in ("log/agent.log", "log/supervisor.log"):
                path = host.prefix / name
                if path.is_file():
                    parts.append(f"----- {node_id}: {path}\n{path.read_text(errors='replace')[-3000:]}")
            parts.append(f"----- {node_id}: sshd log\n{host.log[-1500:]}")
        return "\n".join(parts)

    def add_node(self, node_id: str, host: SshHost, *, port: int | None = None, identity: Path | None = None) -> None:
        ssh = {"host": host.address, "port": port or host.port, "user": host.user,
               "identity_file": str(identity or self.key.private), "prefix": str(host.prefix),
               "python": host_python()}
        r = self.api.post("/api/v1/nodes", json={"id": node_id, "name": node_id, "type": "physical", "ssh": ssh})
        assert r.status_code == 201, r.text
        assert r.json()["ssh"]["port"] == ssh["port"]

    def start(self, nodes: list[str], **options: Any) -> str:
        r = self.api.post("/api/v1/rollouts", json={"nodes": nodes, **options})
        assert r.status_code == 202, r.text
        rollout_id: str = r.json()["id"]
        return rollout_id

    def wait(self, rollout_id: str) -> dict[str, Any]:
        def finished() -> dict[str, Any] | None:
            r = self.api.get(f"/api/v1/rollouts/{rollout_id}")
            assert r.status_code == 200, r.text
            record: dict[str, Any] = r.json()
            return record if record["state"] in ("succeeded", "failed", "cancelled") else None

        return wait_for(f"rollout {rollout_id} to finish", finished, self.logs, ROLLOUT_WAIT)

    def rollout(self, nodes: list[str], **options: Any) -> dict[str, Any]:
        """Start a rollout over REST and wait for its end; the record."""
        return self.wait(self.start(nodes, **options))

    def node(self, node_id: str) -> dict[str, Any]:
        r = self.api.get(f"/api/v1/nodes/{node_id}")
        assert r.status_code == 200, r.text
        node: dict[str, Any] = r.json()
        return node

    def wait_agent(self, node_id: str, version: str) -> dict[str, Any]:
        def on_version() -> dict[str, Any] | None:
            node = self.node(node_id)
            agent = (node.get("hardware") or {}).get("agent") or {}
            return node if node["online"] and agent.get("version") == version else None

        return wait_for(f"node {node_id} online with agent {version}", on_version, self.logs)

    def wait_offline(self, node_id: str) -> None:
        wait_for(f"node {node_id} offline", lambda: not self.node(node_id)["online"], self.logs)


def hosts_of(record: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {host["node_id"]: host for host in record["hosts"]}


def steps_of(host: dict[str, Any]) -> dict[str, str]:
    return {step["name"]: step["state"] for step in host["steps"]}


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def agent_pid(host: SshHost) -> int:
    """The supervised agent's pid (waits for the pid file: the supervisor may be restarting it)."""
    path = host.prefix / "run" / "agent.pid"
    return wait_for(f"{path}", lambda: int(path.read_text()) if path.is_file() and path.read_text().strip() else None)


def current_version(host: SshHost) -> str:
    return os.readlink(host.prefix / "agent" / "current").rstrip("/").rsplit("/", 1)[-1]


def files_under(path: Path) -> list[str]:
    return sorted(str(p.relative_to(path)) for p in path.rglob("*")) if path.exists() else []


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory, sshd_hosts: Callable[[int], list[SshHost]],
         ssh_client_key: ClientKey, agent_builds: AgentBuilds) -> Iterator[Site]:
    hosts = dict(zip(HOSTS, sshd_hosts(len(HOSTS)), strict=True))
    hub = Hub(tmp_path_factory.mktemp("rollout-hub"), agent_builds.current.bundle.archive, list(hosts.values()))
    api = httpx.Client(base_url=hub.url, timeout=30.0, headers=admin_headers(hub.data_dir))
    found = Site(hub=hub, api=api, hosts=hosts, builds=agent_builds, key=ssh_client_key)
    try:
        for node_id, host in hosts.items():
            found.add_node(node_id, host)
        yield found
    finally:
        for host in found.hosts.values():
            kill_prefix_processes(host.prefix)
        api.close()
        hub.kill()
        print(found.logs())


def installed(site: Site, build: AgentBuild, nodes: tuple[str, ...] = HOSTS) -> None:
    """Make sure `nodes` run `build` (an earlier test normally left them so)."""
    behind = [n for n in nodes if site.installed_version.get(n) != build.version]
    if behind:
        record = site.rollout(behind, bundle=str(build.bundle.archive))
        assert record["state"] == "succeeded", record
        site.installed_version.update(dict.fromkeys(behind, build.version))
    for node_id in nodes:
        site.wait_agent(node_id, build.version)


# --- install, no-op, upgrade, rollback ------------------------------------------------------------


def test_fresh_install_brings_every_host_online(site: Site) -> None:
    version = site.builds.current.version
    record = site.rollout(list(HOSTS))

    assert record["state"] == "succeeded", record
    assert record["version"] == version
    for host in hosts_of(record).values():
        assert host["result"] == "installed", host
        assert (host["from_version"], host["to_version"]) == (None, version)
        steps = steps_of(host)
        assert steps.pop("rollback", "skipped") == "skipped", host
        assert set(steps.values()) == {"succeeded"}, host
    site.installed_version.update(dict.fromkeys(HOSTS, version))
    for node_id in HOSTS:
        site.wait_agent(node_id, version)
        prefix = site.hosts[node_id].prefix
        assert current_version(site.hosts[node_id]) == version
        for secret in ("etc/token", "etc/agent.env", "state/identity/key.pem"):
            assert stat.S_IMODE((prefix / secret).stat().st_mode) == 0o600, secret
        assert (prefix / "etc" / "ca.pem").read_bytes() == (site.hub.data_dir / "ca.pem").read_bytes()
        assert stat.S_IMODE((prefix / "etc" / "ca.pem").stat().st_mode) == 0o644
        assert all(alive(pid) for pid in prefix_pids(prefix))
        enrolled_over_mtls(site, node_id)


def enrolled_over_mtls(site: Site, node_id: str) -> None:
    """The node's agent joined (its certificate, from the hub's CA, on the host) and streams on the mTLS port."""
    prefix = site.hosts[node_id].prefix
    cert = prefix / "state" / "identity" / "cert.pem"
    assert cert.is_file(), site.logs()
    _, named = HubCA.load_or_create(site.hub.data_dir).check_node(cert.read_bytes())
    assert named == node_id
    log = (prefix / "log" / "agent.log").read_text(errors="replace")
    assert "joined the hub: node certificate serial" in log, log[-3000:]
    assert f"on {site.hub.agent_address}," in log, log[-3000:]


def test_second_run_through_the_cli_changes_nothing(site: Site) -> None:
    installed(site, site.builds.current)
    pids = {node_id: agent_pid(site.hosts[node_id]) for node_id in HOSTS}

    done = subprocess.run(
        [sys.executable, "-m", "console.cli", "rollout", "--nodes", ",".join(HOSTS), "--hub", site.hub.url,
         "--data-dir", str(site.hub.data_dir)],
        cwd=REPO_ROOT, env=clean_env(), capture_output=True, text=True, timeout=ROLLOUT_WAIT)

    assert done.returncode == 0, f"{done.stdout}\n{done.stderr}\n{site.logs()}"
    for node_id in HOSTS:
        assert any(node_id in line and "unchanged" in line for line in done.stdout.splitlines()), done.stdout
    r = site.api.get("/api/v1/rollouts", params={"node_id": HOSTS[0], "limit": 1})
    record = r.json()[0]
    assert record["state"] == "succeeded"
    for node_id, host in hosts_of(record).items():
        assert host["result"] == "unchanged", host
        steps = steps_of(host)
        assert {steps[name] for name in ("upload", "install", "start") if name in steps} <= {"skipped"}, host
        assert agent_pid(site.hosts[node_id]) == pids[node_id], "the agent was restarted"


def test_upgrade_brings_every_host_online_on_the_newer_build(site: Site) -> None:
    installed(site, site.builds.current)
    old, new = site.builds.current.version, site.builds.newer.version

    record = site.rollout(list(HOSTS), bundle=str(site.builds.newer.bundle.archive))

    assert record["state"] == "succeeded", record
    for report in hosts_of(record).values():
        assert (report["result"], report["from_version"], report["to_version"]) == ("upgraded", old, new), report
    site.installed_version.update(dict.fromkeys(HOSTS, new))
    for node_id in HOSTS:
        site.wait_agent(node_id, new)
        host = site.hosts[node_id]
        assert current_version(host) == new
        assert os.readlink(host.prefix / "agent" / "previous").rstrip("/").rsplit("/", 1)[-1] == old


def test_a_build_that_crashes_is_rolled_back_and_the_old_agent_comes_back(site: Site) -> None:
    installed(site, site.builds.newer, ("n0",))
    good, bad = site.builds.newer.version, site.builds.crashing.version

    record = site.rollout(["n0"], bundle=str(site.builds.crashing.bundle.archive), timeout=CRASH_VERIFY_TIMEOUT)

    host = hosts_of(record)["n0"]
    assert record["state"] == "failed"
    assert host["result"] == "rolled_back", host
    assert record["version"] == bad
    assert bad in host["error"], host
    assert host["from_version"] == good
    assert steps_of(host)["verify"] == "failed", host
    assert host["error"], host
    site.wait_agent("n0", good)
    assert current_version(site.hosts["n0"]) == good


# --- faults ------------------------------------------------------------------------------------------


def test_an_unreachable_host_and_a_wrong_key_fail_while_the_others_succeed(site: Site, tmp_path: Path) -> None:
    installed(site, site.builds.newer, ("n1", "n2"))
    site.add_node("closed", site.hosts["n0"], port=free_port())
    site.add_node("stranger", site.hosts["n0"], identity=make_client_key(tmp_path / "stranger").private)

    record = site.rollout(["n1", "closed", "stranger", "n2"], bundle=str(site.builds.newer.bundle.archive))

    hosts = hosts_of(record)
    assert record["state"] == "failed"
    assert hosts["n1"]["result"] == hosts["n2"]["result"] == "unchanged"
    for node_id in ("closed", "stranger"):
        assert hosts[node_id]["result"] == "failed", hosts[node_id]
        assert steps_of(hosts[node_id])["connect"] == "failed", hosts[node_id]
    assert "cannot connect" in hosts["closed"]["error"], hosts["closed"]
    assert any(word in hosts["stranger"]["error"].lower() for word in ("auth", "permission", "key")), \
        hosts["stranger"]


@pytest.fixture(scope="module")
def stranger_host(site: Site, sshd_hosts: Callable[[int], list[SshHost]]) -> SshHost:
    """A fourth host whose key the hub's known_hosts does not hold (node `n3`)."""
    (host,) = sshd_hosts(1)
    site.hosts["n3"] = host
    site.add_node("n3", host)
    return host


def test_an_unknown_host_key_is_refused_with_its_fingerprint_until_trusted(site: Site, stranger_host: SshHost) -> None:
    record = site.rollout(["n3"])

    host = hosts_of(record)["n3"]
    assert host["result"] == "failed", host
    assert stranger_host.host_key_fingerprint in host["error"], host
    assert "gamenode ssh trust n3" in host["error"], host
    assert not (stranger_host.prefix / "agent").exists()

    r = site.api.get("/api/v1/nodes/n3/ssh/host-key")
    assert r.status_code == 200, r.text
    assert (r.json()["fingerprint"], r.json()["verdict"]) == (stranger_host.host_key_fingerprint, "unknown")
    r = site.api.post("/api/v1/nodes/n3/ssh/trust", json={"fingerprint": stranger_host.host_key_fingerprint})
    assert r.status_code == 200, r.text
    assert r.json()["verdict"] == "known"

    record = site.rollout(["n3"])
    assert hosts_of(record)["n3"]["result"] == "installed", record
    site.installed_version["n3"] = site.builds.current.version
    site.wait_agent("n3", site.builds.current.version)


def test_uninstall_leaves_nothing_behind_and_revokes_the_credential(site: Site, stranger_host: SshHost,
                                                                    tmp_path: Path) -> None:
    if site.installed_version.get("n3") is None:
        site.api.post("/api/v1/nodes/n3/ssh/trust")
        installed(site, site.builds.current, ("n3",))
    prefix = stranger_host.prefix
    token = (prefix / "etc" / "token").read_text().strip()
    pids = prefix_pids(prefix)
    assert pids

    record = site.rollout(["n3"], action="uninstall")

    host = hosts_of(record)["n3"]
    assert record["state"] == "succeeded", record
    assert host["result"] == "removed", host
    assert files_under(prefix) == []
    wait_for("the agent and its supervisor to exit", lambda: not any(alive(pid) for pid in pids), site.logs)
    site.wait_offline("n3")
    assert "agent" not in (site.node("n3").get("hardware") or {})
    refused = old_token_refused(site, token, tmp_path)
    assert refused.returncode != 0, refused.stdout
    assert "hub refused the join token for node n3" in refused.stderr, refused.stderr
    site.installed_version.pop("n3")


def old_token_refused(site: Site, token: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    """`python -m agent --once` with the uninstalled node's (used, then revoked) join token and a new key."""
    token_file = tmp_path / "token"
    token_file.write_text(token)
    token_file.chmod(0o600)
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "agent", "--once", "--hub", site.hub.grpc_address, "--node-id", "n3",
         "--token", f"@{token_file}", "--state-dir", str(tmp_path / "state"),
         "--ca", str(site.hub.data_dir / "ca.pem")],
        cwd=REPO_ROOT, env=clean_env(), capture_output=True, text=True, timeout=60)
    print(f"agent --once with the revoked token: exit {done.returncode} after {time.monotonic() - started:.1f}s")
    print(done.stdout, done.stderr)
    return done
