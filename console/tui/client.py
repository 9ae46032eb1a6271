"""`HubClient`: the console's one way to a hub, `HubService` over one grpc.aio channel.

Create the client anywhere, but `connect()` it inside the running event loop
(the App's `on_mount`): a grpc.aio channel belongs to the loop it was made in.

A `unix:PATH` target (the embedded hub's socket) is plaintext and needs no
token. A `HOST:PORT` target is TLS, trusting `ca_pem` (the hub's own CA,
`DATA_DIR/ca.pem`), unless `insecure` (a hub started with `--insecure`); every
call then carries `authorization: Bearer TOKEN`.

Answers are plain dicts with the REST API's field names (`console.tui.wire`):
times are timezone-aware `datetime`s (UTC) or None, states are strings.

Errors: every failed call raises `HubUnavailableError` with the hub's message
(e.g. "node 'n9' not found") and `code`, the gRPC status in lower case
("not_found", "failed_precondition" for a conflict, "invalid_argument",
"unavailable" when the hub cannot be reached, ...); `NotAvailable` (a
subclass) when the hub does not implement the call, so the screen shows "not
available on this hub". Streams raise the same when they fail; leaving a
stream (`break`, or cancelling the task reading it) cancels the call.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Iterable
from contextlib import aclosing
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, TypeVar

import grpc
from google.protobuf import struct_pb2
from grpc import aio

from console.hub.convert import timestamp
from console.tui import wire
from proto import gamenode_pb2 as pb
from proto import gamenode_pb2_grpc as pb_grpc

__all__ = ["HubClient", "HubUnavailableError", "NodeBatch", "NotAvailable"]

T = TypeVar("T")

WATCH_CHUNK = 100
"""Nodes converted at a time from one `WatchNodes` message (~5 ms), a batch each."""
CALL_TIMEOUT = 45.0
"""Seconds a unary call may take (a container action waits up to 30 s for its agent)."""
CONNECT_TIMEOUT = 10.0
"""Seconds `connect()` waits for the channel to be ready."""
ACTOR = "console"
"""Who the hub records in a node's status history."""
CHANNEL_OPTIONS: tuple[tuple[str, Any], ...] = (
    ("grpc.max_receive_message_length", 64 * 1024 * 1024),
    ("grpc.keepalive_time_ms", 30_000),
)


class HubUnavailableError(Exception):
    """A call to the hub failed; the message says what failed (the hub's own words when it answered)."""

    def __init__(self, message: str, code: str = "unavailable") -> None:
        super().__init__(message)
        self.message = message
        self.code = code
        """The gRPC status in lower case: not_found, failed_precondition, invalid_argument, unavailable, ..."""


class NotAvailable(HubUnavailableError):
    """The hub does not implement this call (an older hub): show "not available on this hub"."""


@dataclass(frozen=True, slots=True)
class NodeBatch:
    """One `WatchNodes` message: part of the first snapshot, or a batch of changes."""

    snapshot: bool
    """True for the messages of the first snapshot (together: every node matching the selector)."""
    nodes: list[dict[str, Any]] = field(default_factory=list)
    """Nodes as they are now (REST fields, live `metrics` and `resources`)."""
    deleted: list[str] = field(default_factory=list)
    """Ids deleted, or no longer matching the selector."""
    snapshot_done: bool = False
    """True on the last message of the snapshot; changes follow."""


def _error(exc: aio.AioRpcError, what: str, target: str) -> HubUnavailableError:
    code = exc.code()
    details = exc.details() or code.name.lower()
    if code == grpc.StatusCode.UNIMPLEMENTED:
        return NotAvailable(f"{what} is not available on this hub", "unimplemented")
    if code == grpc.StatusCode.UNAVAILABLE:
        return HubUnavailableError(f"cannot reach the hub at {target}: {details}", "unavailable")
    if code == grpc.StatusCode.DEADLINE_EXCEEDED and not exc.details():
        return HubUnavailableError(f"{what}: the hub did not answer in time", "deadline_exceeded")
    return HubUnavailableError(details, code.name.lower())


class HubClient:
    """Async calls and streams of `HubService` over one channel to `target` ("HOST:PORT" or "unix:/path")."""

    def __init__(
        self, target: str, token: str | None = None, ca_pem: bytes | None = None, insecure: bool = False,
    ) -> None:
        self.target = target
        self.ca_pem = ca_pem
        """The CA a TCP target's certificate must chain to (None: the system's roots)."""
        self.insecure = insecure
        self._channel: aio.Channel | None = None
        self._stub: Any = None
        metadata: tuple[tuple[str, str], ...] = (("x-gamenode-actor", ACTOR),)
        if token and not self.local:
            metadata += (("authorization", f"Bearer {token}"),)
        self._metadata = metadata

    @property
    def local(self) -> bool:
        """A unix socket: plaintext, and no token (the socket is the hub user's only)."""
        return self.target.startswith("unix:")

    # --- the channel ---------------------------------------------------------------

    async def connect(self, timeout: float = CONNECT_TIMEOUT) -> None:
        """Open the channel (in the running loop) and wait until the hub answers; HubUnavailableError if not."""
        if self._channel is None:
            if self.local or self.insecure:
                self._channel = aio.insecure_channel(self.target, options=CHANNEL_OPTIONS)
            else:
                credentials = grpc.ssl_channel_credentials(root_certificates=self.ca_pem)
                self._channel = aio.secure_channel(self.target, credentials, options=CHANNEL_OPTIONS)
            self._stub = pb_grpc.HubServiceStub(self._channel)  # type: ignore[no-untyped-call]
        try:
            await asyncio.wait_for(self._channel.channel_ready(), timeout)
        except TimeoutError:
            raise HubUnavailableError(f"cannot reach the hub at {self.target} (no answer in {timeout:g} s)") from None

    async def close(self) -> None:
        """Close the channel; calls and streams in progress end."""
        channel, self._channel, self._stub = self._channel, None, None
        if channel is not None:
            await channel.close()

    def _rpc(self, name: str) -> Any:
        if self._stub is None:
            raise HubUnavailableError(f"not connected to the hub at {self.target}")
        return getattr(self._stub, name)

    async def _call(self, name: str, request: Any, timeout: float = CALL_TIMEOUT) -> Any:
        try:
            return await self._rpc(name)(request, metadata=self._metadata, timeout=timeout)
        except aio.AioRpcError as exc:
            raise _error(exc, name, self.target) from None

    async def _stream(self, name: str, request: Any, convert: Callable[[Any], T]) -> AsyncGenerator[T, None]:
        call = self._rpc(name)(request, metadata=self._metadata)
        try:
            async for message in call:
                yield convert(message)
        except aio.AioRpcError as exc:
            raise _error(exc, name, self.target) from None
        finally:
            call.cancel()

    # --- hub and nodes ---------------------------------------------------------------

    async def version(self) -> str:
        """The hub's version, e.g. "0.1.0"."""
        info = await self._call("GetVersion", pb.GetVersionRequest())
        return str(info.version)

    async def list_nodes(self, selector: str = "") -> list[dict[str, Any]]:
        """Every node matching a label selector (one read; live views use `watch_nodes`)."""
        answer = await self._call("ListNodes", pb.ListNodesRequest(selector=selector))
        return [wire.node_to_dict(n) for n in answer.nodes]

    async def watch_nodes(self, selector: str = "") -> AsyncIterator[NodeBatch]:
        """A snapshot of every node matching `selector` (one or more batches, the last `snapshot_done`),
        then batches of changes (about four messages a second) until the stream is left.

        A message is handed on in batches of at most `WATCH_CHUNK` nodes, each converted
        after a turn of the event loop: converting a message of 1,000 nodes in one go
        would keep a key press waiting for ~50 ms. `deleted` and `snapshot_done` come
        with a message's last batch.
        """
        async with aclosing(self._stream("WatchNodes", pb.WatchNodesRequest(selector=selector), _same)) as stream:
            async for update in stream:
                nodes = update.nodes
                starts = range(0, len(nodes), WATCH_CHUNK)
                for start in starts[:-1]:
                    yield NodeBatch(snapshot=update.snapshot, nodes=_nodes(nodes[start:start + WATCH_CHUNK]))
                    await asyncio.sleep(0)
                yield NodeBatch(snapshot=update.snapshot, nodes=_nodes(nodes[starts[-1] if starts else 0:]),
                                deleted=list(update.deleted), snapshot_done=update.snapshot_done)

    async def get_node(self, node_id: str) -> dict[str, Any]:
        return wire.node_to_dict(await self._call("GetNode", pb.GetNodeRequest(id=node_id)))

    async def update_labels(self, node_id: str, set: dict[str, str], remove: list[str]) -> dict[str, Any]:
        """Add or change the labels in `set`, drop those in `remove`; the node."""
        request = pb.UpdateNodeLabelsRequest(id=node_id, set=set, remove=remove)
        return wire.node_to_dict(await self._call("UpdateNodeLabels", request))

    async def set_status(self, node_id: str, status: str, reason: str) -> dict[str, Any]:
        """Move a node to online / offline / maintenance / ready (maintenance needs a reason); the node."""
        request = pb.UpdateNodeStatusRequest(id=node_id, status=status, reason=reason)
        return wire.node_to_dict(await self._call("UpdateNodeStatus", request))

    async def delete_node(self, node_id: str) -> None:
        """Refused (failed_precondition) while the node has live instances."""
        await self._call("DeleteNode", pb.GetNodeRequest(id=node_id))

    async def issue_token(self, node_id: str) -> str:
        """A new agent credential for the node (shown once); the old one stops working."""
        answer = await self._call("IssueAgentToken", pb.GetNodeRequest(id=node_id))
        return str(answer.token)

    async def node_history(self, node_id: str) -> list[dict[str, Any]]:
        """Status changes, oldest first: `at`, `from_status`, `to_status`, `by`, `reason`."""
        return _list(await self._call("GetNodeHistory", pb.GetNodeRequest(id=node_id)))

    async def metrics(self, node_id: str, since: datetime | None = None) -> list[dict[str, Any]]:
        """The node's metrics samples (about the last hour), oldest first: `at`, `cpu_percent`, `load`,
        `memory_percent`, `memory_used_bytes`, `memory_total_bytes`, `disks[]`, `nets[]`, `gpus[]`, `instances`."""
        request = pb.GetMetricsRequest(node_id=node_id)
        if since is not None:
            request.since.CopyFrom(timestamp(since))
        answer = await self._call("GetMetrics", request)
        return [wire.sample_dict(s) for s in answer.samples]

    # --- pipelines and runs -----------------------------------------------------------

    async def pipelines(self) -> list[dict[str, Any]]:
        """The hub's named pipelines: `name`, `description`, `instance` (create, stop, use, none), `params`
        {name: {type, default, required, secret, description, choices}}, `steps`, `problems` (an invalid file)."""
        answer = await self._call("ListPipelines", pb.ListPipelinesRequest())
        return [wire.pipeline_to_dict(p) for p in _list(answer)]

    async def start_run(
        self, node_id: str, pipeline: str, params: dict[str, Any], instance_id: str | None = None
    ) -> dict[str, Any]:
        """Start a named pipeline on a node; the run (invalid params: invalid_argument with each field)."""
        request = pb.StartRunRequest(node_id=node_id, pipeline=pipeline, params=_struct(params),
                                     instance_id=instance_id or "")
        return wire.run_to_dict(await self._call("StartRun", request))

    async def get_run(self, run_id: str) -> dict[str, Any]:
        return wire.run_to_dict(await self._call("GetRun", pb.GetRunRequest(run_id=run_id)))

    async def runs(
        self, node_id: str | None = None, instance_id: str | None = None, state: str | None = None, limit: int = 100
    ) -> list[dict[str, Any]]:
        """Runs, newest first."""
        request = pb.ListRunsRequest(node_id=node_id or "", instance_id=instance_id or "", state=state or "",
                                     limit=limit)
        return [wire.run_to_dict(r) for r in (await self._call("ListRuns", request)).runs]

    def watch_run(self, run_id: str) -> AsyncIterator[dict[str, Any]]:
        """The run as it is, then again after every change, until it has finished (then the stream ends)."""
        return self._stream("WatchRun", pb.GetRunRequest(run_id=run_id), wire.run_to_dict)

    async def cancel_run(self, run_id: str, reason: str) -> dict[str, Any]:
        """The run, `cancelling` until its agent reports it cancelled."""
        request = pb.CancelRunRequest(run_id=run_id, reason=reason)
        return wire.run_to_dict(await self._call("CancelRun", request))

    # --- instances and game cards ---------------------------------------------------------

    async def instances(self, node_id: str | None = None) -> list[dict[str, Any]]:
        """Instances: `id`, `node_id`, `game`, `game_version`, `platform`, `state`, `ports[]`, `run_id`,
        `container_id`, `error`, `started_at`, ..."""
        answer = await self._call("ListInstances", pb.ListInstancesRequest(node_id=node_id or ""))
        return _list(answer)

    async def gamecards(self) -> list[dict[str, Any]]:
        """Game cards: `id`, `name`, `platform`, `default_version`, `versions[]` (`version`, `image`, `status`, ...)."""
        return _list(await self._call("ListGameCards", pb.ListGameCardsRequest()))

    async def launch(
        self, game: str, version: str | None = None, selector: str | None = None,
        params: dict[str, Any] | None = None, policy: str = "spread",
    ) -> dict[str, Any]:
        """Place a game version on the fleet and start it: {instance, run_id}. When no node fits:
        failed_precondition, each node's reason in the message."""
        request = pb.LaunchInstanceRequest(game=game, version=version or "", selector=selector or "",
                                           policy=policy, params=_struct(params or {}))
        return _object(await self._call("LaunchInstance", request))

    async def stop_instance(self, instance_id: str, force: bool = False) -> dict[str, Any]:
        """Stop it through its platform's stop pipeline: {instance, run_id, deleted}."""
        request = pb.StopInstanceRequest(instance_id=instance_id, force=force)
        return _object(await self._call("StopInstance", request))

    async def instance_action(self, instance_id: str, action: str) -> dict[str, Any]:
        """`stop`, `restart` or `remove` the instance's container through its agent; the instance."""
        request = pb.InstanceActionRequest(instance_id=instance_id, action=action)
        return _object(await self._call("InstanceAction", request))

    # --- logs ----------------------------------------------------------------------------

    async def query_logs(
        self, *, node_id: str = "", instance_id: str = "", run_id: str = "", q: str = "", regex: bool = False,
        level: str = "", since: datetime | None = None, until: datetime | None = None, limit: int = 1000,
    ) -> list[dict[str, Any]]:
        """The last `limit` matching lines the hub stored, oldest first: `at`, `node_id`, `source`,
        `level`, `stream`, `text`."""
        request = _log_query(node_id, instance_id, run_id, level, q=q, regex=regex, limit=limit)
        if since is not None:
            request.since.CopyFrom(timestamp(since))
        if until is not None:
            request.until.CopyFrom(timestamp(until))
        answer = await self._call("QueryLogs", request)
        return [wire.entry_to_dict(e) for e in answer.entries]

    def tail_logs(
        self, *, node_id: str = "", instance_id: str = "", run_id: str = "", level: str = ""
    ) -> AsyncIterator[tuple[list[dict[str, Any]], int]]:
        """(lines, dropped) as they arrive. The first is ([], 0) once the tail is live: query what came
        before after it (and drop lines both answer). `dropped`: lines missed because this reader was slow."""
        request = _log_query(node_id, instance_id, run_id, level)
        return self._stream("TailLogs", request, _entries)

    # --- rollouts ------------------------------------------------------------------------

    async def start_rollout(
        self, *, nodes: list[str] | None = None, all_without_agent: bool = False, action: str = "install",
        parallel: int = 10, canary: int = 0, trust_new_host_keys: bool = False,
    ) -> dict[str, Any]:
        """Install (or upgrade) or uninstall the agent on `nodes`, or on every node with ssh and no agent."""
        request = pb.StartRolloutRequest(nodes=nodes or [], all_without_agent=all_without_agent, action=action,
                                         parallel=parallel, canary=canary, trust_new_host_keys=trust_new_host_keys)
        return wire.rollout_to_dict(await self._call("StartRollout", request))

    async def get_rollout(self, rollout_id: str) -> dict[str, Any]:
        return wire.rollout_to_dict(await self._call("GetRollout", pb.GetRolloutRequest(rollout_id=rollout_id)))

    def watch_rollout(self, rollout_id: str) -> AsyncIterator[dict[str, Any]]:
        """The rollout as it is, then again after every change, until it has finished."""
        return self._stream("WatchRollout", pb.GetRolloutRequest(rollout_id=rollout_id), wire.rollout_to_dict)

    async def cancel_rollout(self, rollout_id: str) -> dict[str, Any]:
        """Each host finishes or undoes its current step."""
        answer = await self._call("CancelRollout", pb.GetRolloutRequest(rollout_id=rollout_id))
        return wire.rollout_to_dict(answer)

    async def host_key(self, node_id: str) -> dict[str, Any]:
        """The SSH host key the node presents now: `fingerprint` and `verdict` (known, unknown, changed)."""
        return wire.host_key_to_dict(await self._call("GetHostKey", pb.GetNodeRequest(id=node_id)))

    async def trust_host_key(self, node_id: str, fingerprint: str, replace: bool = False) -> dict[str, Any]:
        """Add the key to the hub's known_hosts, if it is still the one with `fingerprint`."""
        request = pb.TrustHostKeyRequest(node_id=node_id, fingerprint=fingerprint, replace=replace)
        return wire.host_key_to_dict(await self._call("TrustHostKey", request))


# --- helpers ------------------------------------------------------------------------------


def _same(message: Any) -> Any:
    return message


def _nodes(nodes: Iterable[pb.Node]) -> list[dict[str, Any]]:
    return [wire.node_to_dict(n) for n in nodes]


def _entries(answer: pb.LogEntries) -> tuple[list[dict[str, Any]], int]:
    return [wire.entry_to_dict(e) for e in answer.entries], answer.dropped


def _log_query(node_id: str, instance_id: str, run_id: str, level: str, **more: Any) -> pb.LogQuery:
    return pb.LogQuery(node_id=node_id, instance_id=instance_id, run_id=run_id, level=level, **more)


def _struct(values: dict[str, Any]) -> struct_pb2.Struct:
    """Params as a Struct; a value JSON cannot hold is refused before anything is sent."""
    struct = struct_pb2.Struct()
    try:
        struct.update(values)
    except (TypeError, ValueError) as exc:
        raise HubUnavailableError(f"params: not JSON values: {exc}", "invalid_argument") from None
    return struct


def _list(answer: pb.JsonValue) -> list[dict[str, Any]]:
    value = wire.from_json(answer.json)
    return list(value) if isinstance(value, list) else []


def _object(answer: pb.JsonValue) -> dict[str, Any]:
    value = wire.from_json(answer.json)
    return dict(value) if isinstance(value, dict) else {}
