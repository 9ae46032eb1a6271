"""A `HubClient` stand-in with a deterministic fleet, for Pilot and snapshot tests.

    client = FakeClient()
    app = GamenodeApp(lambda: client, clock=lambda: FIXED_NOW)
    client.push(NodeBatch(snapshot=False, nodes=[...], deleted=[], snapshot_done=False))   # a WatchNodes delta
    client.fail["set_status"] = HubUnavailableError("hub down")                            # the next call raises
    client.calls                                                                            # [(method, args, kwargs)]

Six nodes in every status, with labels, hardware, live metrics and a metrics
history; three instances; two pipelines; two game cards; a run with its logs.
Writes (labels, status, delete) change the fake fleet and are sent on the
watch stream as a delta, as the hub would. Part C appends methods at the end.
"""

from __future__ import annotations

import asyncio
import copy
import math
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

from console.tui.app import GamenodeApp
from console.tui.client import HubUnavailableError, NodeBatch

FIXED_NOW = datetime(2025, 1, 15, 12, 0, 0, tzinfo=UTC)
"""The fake's "now": every time in its data is relative to it."""
SAMPLES = 30
"""Metrics history per connected node (one every 10 s)."""


def make_app(client: FakeClient | None = None) -> GamenodeApp:
    """The console over `client` (a fresh FakeClient by default), its clock frozen at FIXED_NOW."""
    fake = client if client is not None else FakeClient()
    return GamenodeApp(lambda: fake, clock=lambda: FIXED_NOW)  # type: ignore[arg-type,return-value]


def notices(app: GamenodeApp) -> list[tuple[str, str]]:
    """(severity, message) of every notification the app raised so far."""
    return [(n.severity, n.message) for n in app._notifications]


def iso(when: datetime) -> str:
    return when.isoformat().replace("+00:00", "Z")


def sample(index: int, seed: int, gpus: int = 0) -> dict[str, Any]:
    """Sample `index` of a node (0: the oldest of the history), as the hub's `metrics` map."""
    at = FIXED_NOW - timedelta(seconds=10 * (SAMPLES - 1 - index))
    cpu = round(40 + 30 * math.sin((index + seed) / 4), 1)
    mem = round(55 + 10 * math.cos((index + seed) / 5), 1)
    return {
        "at": iso(at),
        "cpu_percent": cpu,
        "load": [1.5, 1.2, 1.0],
        "memory_total_bytes": 64 * 2**30,
        "memory_used_bytes": int(64 * 2**30 * mem / 100),
        "memory_percent": mem,
        "disks": [{"mount": "/", "total_bytes": 500 * 2**30, "used_bytes": 200 * 2**30, "percent": 40.0 + seed,
                   "read_bytes_per_s": 1000.0, "write_bytes_per_s": 2000.0}],
        "nets": [{"interface": "eth0", "rx_bytes_per_s": 1_000_000.0 * (1 + index % 5 + seed),
                  "tx_bytes_per_s": 250_000.0 * (1 + index % 3)}],
        "gpus": [{"index": g, "name": "NVIDIA L4", "utilization_percent": round(50 + 40 * math.sin(index / 3 + g), 1),
                  "memory_total_bytes": 24 * 2**30, "memory_used_bytes": 8 * 2**30, "temperature_c": 60.0,
                  "power_w": 70.0} for g in range(gpus)],
        "instances": 1,
    }


def resources_of(metrics: dict[str, Any], instances: int) -> dict[str, Any]:
    """The node's `resources` map from its latest sample (as the hub's `sample_resources`)."""
    out: dict[str, Any] = {
        "cpu_percent": metrics["cpu_percent"],
        "memory_percent": metrics["memory_percent"],
        "disk_percent": max((d["percent"] for d in metrics["disks"]), default=0.0),
        "gpu_count": len(metrics["gpus"]),
        "instances": instances,
    }
    if metrics["gpus"]:
        out["gpu_utilization_percent"] = sum(g["utilization_percent"] for g in metrics["gpus"]) / len(metrics["gpus"])
    return out


def make_node(node_id: str, name: str, status: str, location: str, labels: dict[str, str], *,
              seed: int = 0, gpus: int = 0, instances: int = 0, agent: str | None = "0.3.0",
              last_online: datetime | None = None, online: bool | None = None) -> dict[str, Any]:
    """One node as the client hands it out (REST field names, live metrics when its agent is connected)."""
    online = status in ("online", "ready") if online is None else online
    hardware: dict[str, Any] = {
        "cpu": {"model": "AMD EPYC 7443P", "cores": 24},
        "memory_mb": 65536,
        "gpus": [{"model": "NVIDIA L4", "memory_mb": 24576}] * gpus,
        "disks": [{"mount": "/", "device": "/dev/nvme0n1p1", "fstype": "ext4", "size_gb": 500}],
        "hostname": node_id, "os": "Debian GNU/Linux 12 (bookworm)", "kernel": "6.1.0-18-amd64", "arch": "x86_64",
    }
    if agent is not None:
        hardware["agent"] = {"version": agent, "capabilities": ["docker", "pipeline"]}
    metrics = sample(SAMPLES - 1, seed, gpus) if online else {}
    return {
        "id": node_id, "name": name, "model": "Dell R6525", "type": "physical", "status": status,
        "location": location, "hardware": hardware,
        "network": {"primary_ip": f"10.0.{seed}.10",
                    "interfaces": [{"name": "eth0", "addresses": [f"10.0.{seed}.10"], "mac": f"02:00:00:00:00:0{seed}",
                                    "speed_mbps": 10000, "up": True}]},
        "resources": resources_of(metrics, instances) if online else {},
        "metrics": metrics, "labels": labels, "online": online,
        "last_online": iso(last_online or FIXED_NOW - timedelta(seconds=5)) if agent is not None else None,
        "created_at": iso(FIXED_NOW - timedelta(days=30)), "updated_at": iso(FIXED_NOW - timedelta(minutes=5)),
    }


def fleet() -> list[dict[str, Any]]:
    """The six nodes of the fake fleet, sorted by id."""
    return [
        make_node("ap-sgp-01", "Singapore 1", "offline", "ap-southeast", {"region": "ap"}, seed=5, agent=None),
        make_node("eu-ams-01", "Amsterdam 1", "maintenance", "eu-west", {"region": "eu", "tier": "bronze"}, seed=3,
                  online=True, instances=0),
        make_node("eu-fra-01", "Frankfurt 1", "online", "eu-central", {"region": "eu", "tier": "gold", "gpu": "l4"},
                  seed=1, gpus=2, instances=2),
        make_node("eu-fra-02", "Frankfurt 2", "ready", "eu-central", {"region": "eu", "tier": "silver"}, seed=2,
                  instances=0),
        make_node("us-iad-01", "Virginia 1", "online", "us-east", {"region": "us", "tier": "gold", "gpu": "l4"},
                  seed=4, gpus=1, instances=1),
        make_node("us-iad-02", "Virginia 2", "offline", "us-east", {"region": "us", "spot": "true"}, seed=6,
                  agent="0.2.9", last_online=FIXED_NOW - timedelta(days=3)),
    ]


def instances() -> list[dict[str, Any]]:
    return [
        {"id": "arena-1", "node_id": "eu-fra-01", "game": "arena", "game_version": "1.2.0", "platform": "docker",
         "run_id": "run-0001", "container_id": "c0ffee01", "state": "running",
         "ports": [{"name": "game", "container_port": 7777, "host_port": 30001, "protocol": "udp"}],
         "resources": {"cpu": 2.0, "memory_mb": 4096, "gpu": 1}, "params": {}, "error": None,
         "created_at": iso(FIXED_NOW - timedelta(hours=3)), "updated_at": iso(FIXED_NOW - timedelta(hours=3)),
         "started_at": iso(FIXED_NOW - timedelta(hours=3)), "stopped_at": None},
        {"id": "arena-2", "node_id": "eu-fra-01", "game": "arena", "game_version": "1.1.0", "platform": "docker",
         "run_id": "run-0002", "container_id": "c0ffee02", "state": "stopped",
         "ports": [{"name": "game", "container_port": 7777, "host_port": 30002, "protocol": "udp"}],
         "resources": {"cpu": 2.0, "memory_mb": 4096, "gpu": 0}, "params": {}, "error": None,
         "created_at": iso(FIXED_NOW - timedelta(days=1)), "updated_at": iso(FIXED_NOW - timedelta(hours=20)),
         "started_at": iso(FIXED_NOW - timedelta(days=1)), "stopped_at": iso(FIXED_NOW - timedelta(hours=20))},
        {"id": "racer-1", "node_id": "us-iad-01", "game": "racer", "game_version": "0.9.1", "platform": "docker",
         "run_id": "run-0003", "container_id": "c0ffee03", "state": "running",
         "ports": [{"name": "game", "container_port": 9000, "host_port": 30100, "protocol": "tcp"}],
         "resources": {"cpu": 1.0, "memory_mb": 2048, "gpu": 0}, "params": {}, "error": None,
         "created_at": iso(FIXED_NOW - timedelta(minutes=45)), "updated_at": iso(FIXED_NOW - timedelta(minutes=45)),
         "started_at": iso(FIXED_NOW - timedelta(minutes=44)), "stopped_at": None},
    ]


def pipelines() -> list[dict[str, Any]]:
    return [
        {"name": "platform-start", "description": "Pull, configure and start a game server", "instance": "create",
         "params": {
             "image": {"type": "string", "default": None, "required": True, "secret": False,
                       "description": "Container image", "choices": None},
             "port": {"type": "int", "default": 7777, "required": False, "secret": False,
                      "description": "Game port", "choices": None},
             "mode": {"type": "string", "default": "pvp", "required": False, "secret": False,
                      "description": "Game mode", "choices": ["pvp", "pve"]},
             "registry_password": {"type": "string", "default": None, "required": False, "secret": True,
                                   "description": "Registry password", "choices": None},
         },
         "steps": ["pull", "fetch-data", "render-config", "network", "run", "wait-healthy"]},
        {"name": "platform-stop", "description": "Stop and remove a game server", "instance": "stop",
         "params": {"timeout": {"type": "int", "default": 30, "required": False, "secret": False,
                                "description": "Seconds to wait", "choices": None}},
         "steps": ["stop", "remove"]},
    ]


def gamecards() -> list[dict[str, Any]]:
    return [
        {"id": "arena", "name": "Arena", "description": "5v5 arena shooter", "platform": "docker",
         "default_version": "1.2.0", "labels": {},
         "versions": [{"version": "1.2.0", "image": "registry.local/arena:1.2.0", "status": "active",
                       "resources": {"cpu": 2.0, "memory_mb": 4096, "gpu": 1}},
                      {"version": "1.1.0", "image": "registry.local/arena:1.1.0", "status": "deprecated",
                       "resources": {"cpu": 2.0, "memory_mb": 4096, "gpu": 0}}]},
        {"id": "racer", "name": "Racer", "description": "Kart racing", "platform": "docker",
         "default_version": None, "labels": {},
         "versions": [{"version": "0.9.1", "image": "registry.local/racer:0.9.1", "status": "active",
                       "resources": {"cpu": 1.0, "memory_mb": 2048, "gpu": 0}}]},
    ]


def runs() -> list[dict[str, Any]]:
    steps = [
        {"name": name, "action": action, "state": "succeeded", "progress": 100, "message": "", "attempt": 1,
         "started_at": iso(FIXED_NOW - timedelta(hours=3, seconds=60 - 5 * i)),
         "finished_at": iso(FIXED_NOW - timedelta(hours=3, seconds=55 - 5 * i)), "cleanup": False, "outputs": {}}
        for i, (name, action) in enumerate([("pull", "image.pull"), ("run", "container.run"),
                                            ("wait-healthy", "container.wait")])
    ]
    return [
        {"id": "run-0001", "node_id": "eu-fra-01", "pipeline": "platform-start", "params": {"image": "arena:1.2.0"},
         "instance_id": "arena-1", "instance_mode": "create", "state": "succeeded", "error": None, "steps": steps,
         "created_at": iso(FIXED_NOW - timedelta(hours=3, minutes=1)),
         "updated_at": iso(FIXED_NOW - timedelta(hours=3)),
         "started_at": iso(FIXED_NOW - timedelta(hours=3, minutes=1)),
         "finished_at": iso(FIXED_NOW - timedelta(hours=3)), "created_by": "console", "reason": "",
         "cancel_reason": ""},
    ]


def logs() -> list[dict[str, Any]]:
    lines = [
        ("agent", "info", "stdout", "pulling registry.local/arena:1.2.0"),
        ("agent", "info", "stdout", "image pulled (125 MB)"),
        ("instance", "warning", "stderr", "config key 'tickrate' deprecated"),
        ("instance", "info", "stdout", "listening on :7777"),
        ("instance", "error", "stderr", "player 42 timed out"),
    ]
    return [
        {"at": FIXED_NOW - timedelta(minutes=5 - i), "node_id": "eu-fra-01", "instance_id": "arena-1",
         "run_id": "run-0001", "source": source, "level": level, "stream": stream, "text": text}
        for i, (source, level, stream, text) in enumerate(lines)
    ]


class FakeClient:
    """Every `HubClient` method over in-memory data; records calls, raises what `fail` says."""

    def __init__(self, nodes: list[dict[str, Any]] | None = None, *, snapshot_chunk: int = 4) -> None:
        self.nodes: dict[str, dict[str, Any]] = {n["id"]: n for n in (fleet() if nodes is None else nodes)}
        self.instance_list = instances()
        self.pipeline_list = pipelines()
        self.gamecard_list = gamecards()
        self.run_list = runs()
        self.log_list = logs()
        self.history: dict[str, list[dict[str, Any]]] = {
            "eu-fra-01": [
                {"at": iso(FIXED_NOW - timedelta(days=30)), "from_status": None, "to_status": "offline",
                 "by": "admin", "reason": "created"},
                {"at": iso(FIXED_NOW - timedelta(days=1)), "from_status": "offline", "to_status": "online",
                 "by": "hub", "reason": "agent connected"},
            ],
            "eu-ams-01": [
                {"at": iso(FIXED_NOW - timedelta(days=2)), "from_status": "offline", "to_status": "online",
                 "by": "hub", "reason": "agent connected"},
                {"at": iso(FIXED_NOW - timedelta(hours=2)), "from_status": "online", "to_status": "maintenance",
                 "by": "alice", "reason": "disk replacement"},
            ],
        }
        self.snapshot_chunk = snapshot_chunk
        self.calls: list[tuple[str, tuple[Any, ...], dict[str, Any]]] = []
        self.fail: dict[str, Exception] = {}
        """Method name → exception its next call raises (then removed)."""
        self.connected = False
        self.watchers = 0
        self._deltas: asyncio.Queue[NodeBatch | None] = asyncio.Queue()

    # --- test controls ------------------------------------------------------------

    def push(self, batch: NodeBatch | None) -> None:
        """Send `batch` on the watch stream (None ends the stream)."""
        self._deltas.put_nowait(batch)

    def push_nodes(self, *nodes: dict[str, Any], deleted: tuple[str, ...] = ()) -> None:
        """Store `nodes` and send them as one delta."""
        for node in nodes:
            self.nodes[node["id"]] = node
        for node_id in deleted:
            self.nodes.pop(node_id, None)
        self.push(NodeBatch(snapshot=False, nodes=list(nodes), deleted=list(deleted), snapshot_done=False))

    def called(self, method: str) -> list[tuple[tuple[Any, ...], dict[str, Any]]]:
        """The arguments of every call of `method`."""
        return [(args, kwargs) for name, args, kwargs in self.calls if name == method]

    def _record(self, method: str, *args: Any, **kwargs: Any) -> None:
        self.calls.append((method, args, kwargs))
        error = self.fail.pop(method, None)
        if error is not None:
            raise error

    def _node(self, node_id: str) -> dict[str, Any]:
        node = self.nodes.get(node_id)
        if node is None:
            raise HubUnavailableError(f"node {node_id!r} not found")
        return node

    def _changed(self, node: dict[str, Any]) -> dict[str, Any]:
        self.nodes[node["id"]] = node
        self.push(NodeBatch(snapshot=False, nodes=[node], deleted=[], snapshot_done=False))
        return copy.deepcopy(node)

    # --- connection ---------------------------------------------------------------

    async def connect(self) -> None:
        self._record("connect")
        self.connected = True

    async def close(self) -> None:
        self._record("close")
        self.connected = False
        self.push(None)

    async def version(self) -> str:
        self._record("version")
        return "0.3.0"

    # --- nodes --------------------------------------------------------------------

    async def watch_nodes(self, selector: str = "") -> AsyncIterator[NodeBatch]:
        self._record("watch_nodes", selector)
        self.watchers += 1
        try:
            ordered = [copy.deepcopy(self.nodes[k]) for k in sorted(self.nodes)]
            chunks = [ordered[i:i + self.snapshot_chunk] for i in range(0, len(ordered), self.snapshot_chunk)] or [[]]
            for i, chunk in enumerate(chunks):
                yield NodeBatch(snapshot=True, nodes=chunk, deleted=[], snapshot_done=i == len(chunks) - 1)
            while (batch := await self._deltas.get()) is not None:
                yield batch
        finally:
            self.watchers -= 1

    async def get_node(self, node_id: str) -> dict[str, Any]:
        self._record("get_node", node_id)
        return copy.deepcopy(self._node(node_id))

    async def update_labels(self, node_id: str, set: dict[str, str], remove: list[str]) -> dict[str, Any]:
        self._record("update_labels", node_id, set, remove)
        node = copy.deepcopy(self._node(node_id))
        labels = {k: v for k, v in node["labels"].items() if k not in remove}
        node["labels"] = {**labels, **set}
        return self._changed(node)

    async def set_status(self, node_id: str, status: str, reason: str) -> dict[str, Any]:
        self._record("set_status", node_id, status, reason)
        node = copy.deepcopy(self._node(node_id))
        self.history.setdefault(node_id, []).append(
            {"at": iso(FIXED_NOW), "from_status": node["status"], "to_status": status, "by": "console",
             "reason": reason})
        node["status"] = status
        return self._changed(node)

    async def delete_node(self, node_id: str) -> None:
        self._record("delete_node", node_id)
        self._node(node_id)
        self.push_nodes(deleted=(node_id,))

    async def issue_token(self, node_id: str) -> str:
        self._record("issue_token", node_id)
        self._node(node_id)
        return f"gn_{node_id}_5ecret"

    async def node_history(self, node_id: str) -> list[dict[str, Any]]:
        self._record("node_history", node_id)
        self._node(node_id)
        return copy.deepcopy(self.history.get(node_id, []))

    async def metrics(self, node_id: str, since: datetime | None = None) -> list[dict[str, Any]]:
        self._record("metrics", node_id, since)
        node = self._node(node_id)
        if not node["online"]:
            return []
        seed = int(node["network"]["primary_ip"].split(".")[2])
        gpus = len(node["hardware"].get("gpus", []))
        return [sample(i, seed, gpus) for i in range(SAMPLES)]

    # --- pipelines and runs -------------------------------------------------------

    async def pipelines(self) -> list[dict[str, Any]]:
        self._record("pipelines")
        return copy.deepcopy(self.pipeline_list)

    async def start_run(self, node_id: str, pipeline: str, params: dict[str, Any],
                        instance_id: str | None = None) -> dict[str, Any]:
        self._record("start_run", node_id, pipeline, params, instance_id)
        run = {**copy.deepcopy(self.run_list[0]), "id": f"run-{len(self.run_list) + 1:04d}", "node_id": node_id,
               "pipeline": pipeline, "params": params, "instance_id": instance_id, "state": "pending",
               "steps": [], "finished_at": None}
        self.run_list.append(run)
        return copy.deepcopy(run)

    async def get_run(self, run_id: str) -> dict[str, Any]:
        self._record("get_run", run_id)
        for run in self.run_list:
            if run["id"] == run_id:
                return copy.deepcopy(run)
        raise HubUnavailableError(f"run {run_id!r} not found")

    async def watch_run(self, run_id: str) -> AsyncIterator[dict[str, Any]]:
        self._record("watch_run", run_id)
        yield await self.get_run(run_id)

    async def cancel_run(self, run_id: str, reason: str) -> dict[str, Any]:
        self._record("cancel_run", run_id, reason)
        run = await self.get_run(run_id)
        return {**run, "state": "cancelling", "cancel_reason": reason}

    # --- instances and game cards -------------------------------------------------

    async def instances(self, node_id: str | None = None) -> list[dict[str, Any]]:
        self._record("instances", node_id)
        return [copy.deepcopy(i) for i in self.instance_list if node_id is None or i["node_id"] == node_id]

    async def gamecards(self) -> list[dict[str, Any]]:
        self._record("gamecards")
        return copy.deepcopy(self.gamecard_list)

    async def launch(self, game: str, version: str | None = None, selector: str | None = None,
                     params: dict[str, Any] | None = None, policy: str = "spread") -> dict[str, Any]:
        self._record("launch", game, version, selector, params, policy)
        instance = {**copy.deepcopy(self.instance_list[0]), "id": f"{game}-{len(self.instance_list) + 1}",
                    "game": game, "state": "pending"}
        self.instance_list.append(instance)
        return {"instance": instance, "run_id": f"run-{len(self.run_list) + 1:04d}"}

    async def stop_instance(self, instance_id: str, force: bool = False) -> dict[str, Any]:
        self._record("stop_instance", instance_id, force)
        return {"run_id": f"run-stop-{instance_id}"}

    async def instance_action(self, instance_id: str, action: str) -> dict[str, Any]:
        self._record("instance_action", instance_id, action)
        return {"instance_id": instance_id, "action": action}

    # --- logs ---------------------------------------------------------------------

    async def query_logs(self, *, node_id: str = "", instance_id: str = "", run_id: str = "", q: str = "",
                         regex: bool = False, level: str = "", since: datetime | None = None,
                         until: datetime | None = None, limit: int = 1000) -> list[dict[str, Any]]:
        self._record("query_logs", node_id=node_id, instance_id=instance_id, run_id=run_id, q=q, level=level)
        return [dict(e) for e in self.log_list
                if (not node_id or e["node_id"] == node_id) and (not instance_id or e["instance_id"] == instance_id)
                and (not run_id or e["run_id"] == run_id) and (not level or e["level"] == level)
                and q in e["text"]][-limit:]

    async def tail_logs(self, *, node_id: str = "", instance_id: str = "", run_id: str = "",
                        level: str = "") -> AsyncIterator[tuple[list[dict[str, Any]], int]]:
        self._record("tail_logs", node_id=node_id, instance_id=instance_id, run_id=run_id, level=level)
        await asyncio.Event().wait()  # nothing new arrives
        yield [], 0  # pragma: no cover

    # --- rollouts (Part C) ----------------------------------------------------------
    # `rollout_updates`: what WatchRollout sends after the rollout as started (set by a test; default: every
    # host installed). Host keys: `fingerprint` SHA256:fake-<node>, `verdict` unknown until trusted.

    async def start_rollout(self, *, nodes: list[str] | None = None, all_without_agent: bool = False,
                            action: str = "install", parallel: int = 10, canary: int = 0,
                            trust_new_host_keys: bool = False) -> dict[str, Any]:
        self._record("start_rollout", nodes=nodes, all_without_agent=all_without_agent, action=action,
                     parallel=parallel, canary=canary, trust_new_host_keys=trust_new_host_keys)
        chosen = nodes or [k for k, n in sorted(self.nodes.items()) if n.get("ssh") and not n["online"]]
        steps = (["connect", "preflight", "upload", "install", "configure", "switch", "start", "verify", "rollback"]
                 if action == "install" else ["connect", "stop", "remove", "revoke"])
        started = len(self.called("start_rollout"))
        return {"id": f"ro-{started:04d}", "action": action, "state": "pending", "error": "", "version": "0.3.0",
                "hosts": [{"node_id": n, "host": f"{self.nodes[n].get('ssh', {}).get('host', n)}:22",
                           "from_version": None, "to_version": "0.3.0", "result": "", "error": "", "duration_s": 0.0,
                           "steps": [{"name": s, "state": "pending", "message": ""} for s in steps]}
                          for n in chosen]}

    async def watch_rollout(self, rollout_id: str) -> AsyncIterator[dict[str, Any]]:
        self._record("watch_rollout", rollout_id)
        for update in copy.deepcopy(getattr(self, "rollout_updates", None) or []):
            yield {**update, "id": rollout_id}

    async def host_key(self, node_id: str) -> dict[str, Any]:
        self._record("host_key", node_id)
        node = self._node(node_id)
        trusted = getattr(self, "trusted_keys", set())
        return {"node_id": node_id, "host": (node.get("ssh") or {}).get("host", node_id), "port": 22,
                "fingerprint": f"SHA256:fake-{node_id}", "verdict": "known" if node_id in trusted else "unknown"}

    async def trust_host_key(self, node_id: str, fingerprint: str, replace: bool = False) -> dict[str, Any]:
        self._record("trust_host_key", node_id, fingerprint, replace)
        self.trusted_keys: set[str] = {*getattr(self, "trusted_keys", set()), node_id}
        return {**await self.host_key(node_id), "verdict": "known"}
