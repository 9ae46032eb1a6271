"""A real fleet for the integration tests: one `gamenode hub` process and real agent processes.

    fleet = Fleet(tmp_path)
    fleet.start_hub()                      # short heartbeat/metrics intervals, INFO logs to a file
    agents = fleet.start_agents(["a", "b"])  # nodes and tokens over REST, `python -m agent` each
    fleet.wait_online(["a", "b"])
    ...
    fleet.close()                          # kills whatever still runs, prints every log

Every process writes its stdout and stderr to a file under the test's tmp
dir; `fleet.logs()` gathers them, and every failed wait shows them (so does
the teardown's captured stdout when a test fails).
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

import httpx

T = TypeVar("T")

REPO_ROOT = Path(__file__).resolve().parents[2]
WAIT = 30.0
"""Seconds any polled condition may take (generous: nothing here is a timing assertion)."""
POLL = 0.1
STOP_TIMEOUT = 15.0
"""Seconds a process may take to exit after SIGTERM."""
HEARTBEAT_S = 1.0
"""The hub's heartbeat interval for the fleet tests (metrics: twice that); silence for 3 of them is offline."""
BACKOFF_CAP_S = 1.0
"""The agents' reconnect backoff cap, so that a restarted hub sees them back within about a second."""

_READY = re.compile(r"^gamenode hub: REST API on (http://\S+) .*\bgRPC on (\S+?), ", re.MULTILINE)
_AGENTS = re.compile(r"^gamenode hub: .*\bagents on (\S+) ", re.MULTILINE)


def admin_headers(data_dir: Path) -> dict[str, str]:
    """REST headers with the hub's local admin API token (`DATA_DIR/admin.token`, written at its first start)."""
    return {"Authorization": f"Bearer {(data_dir / 'admin.token').read_text().strip()}"}


def clean_env(**settings: str) -> dict[str, str]:
    """The test's environment without any GAMENODE_ variable, plus `settings`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("GAMENODE_")}
    env.update(settings)
    return env


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def wait_for(what: str, check: Callable[[], T | None], logs: Callable[[], str] = lambda: "",
             timeout: float = WAIT) -> T:
    """Poll `check()` until it answers something truthy, and return that; else fail with `what` and the logs."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while True:
        try:
            result = check()
        except (httpx.TransportError, OSError) as exc:  # a hub that is (re)starting
            result, last = None, exc
        else:
            last = result
        if result:
            return result
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what} (last: {last!r})\n{logs()}")
        time.sleep(POLL)


class Process:
    """A child process whose stdout and stderr go to one log file."""

    def __init__(self, name: str, command: Sequence[str], env: dict[str, str], log_path: Path) -> None:
        self.name = name
        self.command = list(command)
        self.log_path = log_path
        with log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                self.command, cwd=REPO_ROOT, env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=log,
            )

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def running(self) -> bool:
        return self.proc.poll() is None

    def output(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def signal(self, sig: signal.Signals) -> None:
        if self.running:
            self.proc.send_signal(sig)

    def wait(self, timeout: float = STOP_TIMEOUT) -> int | None:
        """The exit code, or None when it is still running after `timeout` seconds."""
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return None

    def terminate(self, timeout: float = STOP_TIMEOUT) -> int | None:
        """SIGTERM and the exit code (None: it did not exit in time, and is left running)."""
        self.signal(signal.SIGTERM)
        return self.wait(timeout)

    def kill(self) -> None:
        if self.running:
            self.proc.kill()
        self.proc.wait()

    def describe(self) -> str:
        state = "running" if self.running else f"exited {self.proc.returncode}"
        return f"----- {self.name} (pid {self.pid}, {state}): {self.log_path}\n{self.output()}"


class HubProcess(Process):
    """`gamenode hub` with the fleet's short intervals (plus `args` and `settings`, e.g.
    GAMENODE_NODE_CERT_DAYS); `url`, `grpc_address` and `agent_address` once it announced them."""

    def __init__(self, data_dir: Path, log_path: Path, grpc_port: int = 0, args: Sequence[str] = (),
                 **settings: str) -> None:
        command = [
            sys.executable, "-m", "console.cli", "hub", "--data-dir", str(data_dir),
            "--http-listen", "127.0.0.1:0", "--grpc-listen", f"127.0.0.1:{grpc_port}", *args,
        ]
        env = clean_env(
            GAMENODE_HEARTBEAT_INTERVAL=str(HEARTBEAT_S),
            GAMENODE_METRICS_INTERVAL=str(HEARTBEAT_S),
            GAMENODE_LOG_LEVEL="INFO",
            **settings,
        )
        super().__init__(log_path.stem, command, env, log_path)
        self.data_dir = data_dir
        self.url, self.grpc_address = wait_for(f"{self.name} to announce its addresses", self._ready, self.describe)
        agents = _AGENTS.search(self.output())
        self.agent_address = agents.group(1) if agents else ""
        """Where agents stream (`agents on ADDR (mTLS|plaintext)` of the ready line)."""

    def _ready(self) -> tuple[str, str] | None:
        found = _READY.search(self.output())
        if found:
            return found.group(1), found.group(2)
        if not self.running:
            raise AssertionError(f"{self.name} exited before it was ready\n{self.describe()}")
        return None


class AgentProcess(Process):
    """`python -m agent` for one node, its join token in a 0600 file, its own state dir (and identity).

    `ca`: the hub CA to pin (`--ca`); `insecure`: `--insecure`. `token` None: start without `--token` (a
    node that holds its certificate already)."""

    def __init__(self, hub: str, node_id: str, token: str | None, root: Path, once: bool = False,
                 name: str | None = None, home: Path | None = None, ca: Path | None = None,
                 insecure: bool = False, extra: Sequence[str] = ()) -> None:
        name = name or f"agent-{node_id}"
        home = home or root / name
        home.mkdir(parents=True, exist_ok=True)
        self.token_file = home / "token"
        self.state_dir = home / "state"
        command = [sys.executable, "-m", "agent", "--hub", hub, "--node-id", node_id, "--state-dir",
                   str(self.state_dir)]
        if token is not None:
            self.token_file.write_text(token + "\n")
            self.token_file.chmod(0o600)
            command += ["--token", f"@{self.token_file}"]
        command += ["--ca", str(ca)] if ca is not None else []
        command += ["--insecure"] if insecure else []
        command += list(extra)
        if once:
            command.append("--once")
        super().__init__(name, command, clean_env(GAMENODE_AGENT_BACKOFF_CAP=str(BACKOFF_CAP_S)),
                         root / f"{name}.log")
        self.node_id = node_id


class Fleet:
    """A hub, its REST client and the agents of one test, all under `root`."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.data_dir = root / "data"
        self.hubs: list[HubProcess] = []
        self.agents: list[AgentProcess] = []
        self._client: httpx.Client | None = None

    # --- processes --------------------------------------------------------------

    @property
    def hub(self) -> HubProcess:
        assert self.hubs, "no hub started"
        return self.hubs[-1]

    @property
    def api(self) -> httpx.Client:
        """A REST client of the latest hub (a new one after a restart: the REST port changes)."""
        if self._client is None or str(self._client.base_url).rstrip("/") != self.hub.url:
            if self._client is not None:
                self._client.close()
            self._client = httpx.Client(base_url=self.hub.url, timeout=15.0, headers=admin_headers(self.data_dir))
        return self._client

    def start_hub(self, grpc_port: int = 0, args: Sequence[str] = (), **settings: str) -> HubProcess:
        hub = HubProcess(self.data_dir, self.root / f"hub-{len(self.hubs)}.log", grpc_port, args, **settings)
        self.hubs.append(hub)
        return hub

    def add_node(self, node_id: str, **fields: Any) -> str:
        """Create the node over REST and issue its agent's token (the answer's only copy of it)."""
        body = {"id": node_id, "name": node_id, "type": "physical", **fields}
        r = self.api.post("/api/v1/nodes", json=body)
        assert r.status_code == 201, r.text
        return self.issue_token(node_id)

    def issue_token(self, node_id: str) -> str:
        r = self.api.post(f"/api/v1/nodes/{node_id}/token")
        assert r.status_code == 201, r.text
        answer = r.json()
        assert answer["node_id"] == node_id
        token: str = answer["token"]
        assert token
        return token

    def start_agent(self, node_id: str, token: str | None, once: bool = False, name: str | None = None,
                    hub: str | None = None, home: Path | None = None, ca: Path | None = None,
                    pin_ca: bool = True, insecure: bool = False, extra: Sequence[str] = ()) -> AgentProcess:
        """A new agent process with `--ca` the hub's CA (or `ca`; none without `pin_ca` or with `insecure`);
        `home` (an earlier agent's token file and state dir) to restart that agent; `token` None to start it
        without one."""
        ca = (ca or self.data_dir / "ca.pem") if pin_ca and not insecure else None
        agent = AgentProcess(hub or self.hub.grpc_address, node_id, token, self.root, once=once, name=name,
                             home=home, ca=ca, insecure=insecure, extra=extra)
        self.agents.append(agent)
        return agent

    def start_agents(self, node_ids: Sequence[str], **fields: Any) -> dict[str, AgentProcess]:
        """A node (with `fields`), a token and a running agent for each id."""
        tokens = {node_id: self.add_node(node_id, **fields) for node_id in node_ids}
        return {node_id: self.start_agent(node_id, token) for node_id, token in tokens.items()}

    def close(self) -> None:
        """Kill whatever still runs, close the client and print every log (shown when the test failed)."""
        for process in [*self.agents, *self.hubs]:
            process.kill()
        if self._client is not None:
            self._client.close()
        print(self.logs())

    def logs(self) -> str:
        return "\n".join(p.describe() for p in [*self.hubs, *self.agents])

    # --- queries ----------------------------------------------------------------

    def node(self, node_id: str) -> dict[str, Any]:
        r = self.api.get(f"/api/v1/nodes/{node_id}")
        assert r.status_code == 200, r.text
        node: dict[str, Any] = r.json()
        return node

    def history(self, node_id: str) -> list[dict[str, Any]]:
        r = self.api.get(f"/api/v1/nodes/{node_id}/history")
        assert r.status_code == 200, r.text
        changes: list[dict[str, Any]] = r.json()
        return changes

    def wait(self, what: str, check: Callable[[], T | None], timeout: float = WAIT) -> T:
        return wait_for(what, check, self.logs, timeout)

    def wait_online(self, node_ids: Sequence[str]) -> dict[str, dict[str, Any]]:
        """Wait until every node is online with its agent's inventory and a metrics sample; the nodes."""

        def reported(node_id: str) -> dict[str, Any] | None:
            node = self.node(node_id)
            ok = node["online"] and node["status"] == "online" and node["hardware"] and node["metrics"]
            return node if ok else None

        nodes = {}
        for node_id in node_ids:
            nodes[node_id] = self.wait(f"node {node_id} online with its inventory and metrics",
                                       lambda node_id=node_id: reported(node_id))
        return nodes

    def wait_offline(self, node_id: str) -> dict[str, Any]:
        def offline() -> dict[str, Any] | None:
            node = self.node(node_id)
            return node if not node["online"] and node["status"] == "offline" else None

        return self.wait(f"node {node_id} offline", offline)

    def ping(self, node_id: str) -> httpx.Response:
        return self.api.post(f"/api/v1/nodes/{node_id}/ping")
