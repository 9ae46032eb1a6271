"""`HubService`: what consoles (the TUI, the CLI) call, over the same services as the REST API.

Nodes come with their live `metrics`/`resources` (`LiveState.overlay`), as in
REST answers. Service calls run in a worker thread (they may write to disk or
walk every node); errors end the call with the status `grpc_status` maps them
to, in `console.hub.errors`. The caller (its API token's name; on the unix socket
the `x-gamenode-actor` metadata, default "console") is recorded in status
history. Who may call what is checked around this servicer
(`console.hub.grpc_auth`).

`WatchNodes` answers a snapshot of every node matching the selector, then
batches of what changed (at most four a second, each node as it is now) and
the ids that were deleted or no longer match.

Runs: `StartRun`, `GetRun`, `ListRuns`, `CancelRun` as in REST. `WatchRun`
answers the run as it is, then the run again after every change (steps,
progress; a reader that falls behind gets the newest state, not every one in
between) until it has finished, then ends. It is fed by the run service's
listeners, never by polling. `QueryLogs` and `TailLogs` are in
`console.hub.log_rpc`; `StartRollout`, `GetRollout`, `WatchRollout` (the same
way as `WatchRun`) and `CancelRollout` in `console.hub.rollout_rpc`; the
console's extras (node history, labels, tokens, pipelines, instances, game
cards, launch / stop / container actions, SSH host keys) in
`console.hub.console_rpc`.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from typing import Any, TypeVar

from google.protobuf import timestamp_pb2
from grpc import aio

from console.errors import GamenodeError, InvalidInput, Unavailable
from console.hub import log_rpc, rollout_rpc
from console.hub.console_rpc import ConsoleRpc
from console.hub.convert import API, dict_from_struct, node_to_pb, run_to_pb
from console.hub.errors import grpc_status
from console.hub.grpc_auth import current_principal
from console.hub.live import LiveState
from console.hub.watch import Latest, NodeFeed
from console.models import GameNode, PipelineRun
from console.service import NodeQuery, RunQuery, RunRequest, Selector, Services
from console.service.launch import LaunchService
from console.service.logs import LogService
from console.validation import validate
from proto import gamenode_pb2 as pb
from proto import gamenode_pb2_grpc as pb_grpc

__all__ = ["HubServicer"]

T = TypeVar("T")
Context = aio.ServicerContext[Any, Any]

SMALL_BATCH = 64
"""Watch batches up to this many nodes are converted on the loop; bigger ones in a thread."""
SNAPSHOT_CHUNK = 500
"""Nodes per snapshot message: ~0.5 MB, far below the 4 MB a default gRPC client accepts."""


class HubServicer(pb_grpc.HubServiceServicer):
    def __init__(
        self, services: Services, live: LiveState, feed: NodeFeed, version: str, logs: LogService | None = None,
        launch: LaunchService | None = None,
    ) -> None:
        self.services = services
        self.live = live
        self.feed = feed
        self.version = version
        self.logs = logs
        self.console = ConsoleRpc(services, launch, self._pb)

    async def GetVersion(self, request: pb.GetVersionRequest, context: Context) -> pb.VersionInfo:
        return pb.VersionInfo(version=self.version, api=API)

    async def ListNodes(self, request: pb.ListNodesRequest, context: Context) -> pb.ListNodesResponse:
        def run() -> pb.ListNodesResponse:
            query = validate(NodeQuery, {
                "status": request.status or None, "type": request.type or None,
                "location": request.location or None, "selector": request.selector or None,
                "q": request.q or None, "sort": request.sort or "id",
                "limit": request.limit or None, "offset": request.offset,
            }, "query")
            page = self.services.nodes.list_nodes(query)
            return pb.ListNodesResponse(nodes=[self._pb(n) for n in page.items], total=page.total)

        return await _call(context, run)

    async def GetNode(self, request: pb.GetNodeRequest, context: Context) -> pb.Node:
        return await _call(context, lambda: self._pb(self.services.nodes.get_node(request.id)))

    async def CreateNode(self, request: pb.NodeJson, context: Context) -> pb.Node:
        actor = _actor(context)
        return await _call(context, lambda: self._pb(self.services.nodes.create_node(_object(request.json), actor)))

    async def UpdateNode(self, request: pb.UpdateNodeRequest, context: Context) -> pb.Node:
        actor = _actor(context)
        return await _call(
            context, lambda: self._pb(self.services.nodes.update_node(request.id, _object(request.json), actor))
        )

    async def DeleteNode(self, request: pb.GetNodeRequest, context: Context) -> pb.DeleteNodeResponse:
        await _call(context, lambda: self.services.nodes.delete_node(request.id))
        return pb.DeleteNodeResponse()

    async def UpdateNodeStatus(self, request: pb.UpdateNodeStatusRequest, context: Context) -> pb.Node:
        actor = _actor(context)
        return await _call(context, lambda: self._pb(
            self.services.nodes.update_node_status(request.id, request.status, request.reason, actor)
        ))

    async def GetMetrics(self, request: pb.GetMetricsRequest, context: Context) -> pb.MetricsHistory:
        await _call(context, lambda: self.services.nodes.get_node(request.node_id))
        since = _seconds(request.since) if request.HasField("since") else None
        until = _seconds(request.until) if request.HasField("until") else None
        return pb.MetricsHistory(node_id=request.node_id, samples=self.live.history(request.node_id, since, until))

    async def WatchNodes(
        self, request: pb.WatchNodesRequest, context: Context
    ) -> AsyncIterator[pb.NodeUpdate]:
        selector = await _call(context, lambda: Selector.parse(request.selector))
        with self.feed.watch() as watcher:  # before the snapshot: no change falls in between
            visible: set[str] = set()
            for chunk in await _call(context, lambda: self._snapshot(selector, visible)):
                yield chunk
            while (ids := await watcher.next_batch()) is not None:
                if len(ids) <= SMALL_BATCH:
                    update = self._delta(ids, selector, visible)
                else:
                    update = await asyncio.to_thread(self._delta, ids, selector, visible)
                if update.nodes or update.deleted:
                    yield update

    # --- runs -------------------------------------------------------------------

    async def StartRun(self, request: pb.StartRunRequest, context: Context) -> pb.Run:
        actor = _actor(context)

        def run() -> pb.Run:
            params = dict_from_struct(request.params) if request.HasField("params") else {}
            start = validate(RunRequest, {
                "node_id": request.node_id, "pipeline": request.pipeline or None,
                "yaml": request.pipeline_yaml or None, "params": params, "instance_id": request.instance_id or None,
            }, "run")
            return run_to_pb(self.services.runs.start_request(start, actor))

        return await _call(context, run)

    async def GetRun(self, request: pb.GetRunRequest, context: Context) -> pb.Run:
        return await _call(context, lambda: run_to_pb(self.services.runs.get_run(request.run_id)))

    async def ListRuns(self, request: pb.ListRunsRequest, context: Context) -> pb.ListRunsResponse:
        def run() -> pb.ListRunsResponse:
            query = validate(RunQuery, {
                "node_id": request.node_id or None, "instance_id": request.instance_id or None,
                "state": request.state or None, "limit": request.limit or None,
            }, "query")
            page = self.services.runs.list_runs(query)
            return pb.ListRunsResponse(runs=[run_to_pb(r) for r in page.items], total=page.total)

        return await _call(context, run)

    async def CancelRun(self, request: pb.CancelRunRequest, context: Context) -> pb.Run:
        actor = _actor(context)
        return await _call(context, lambda: run_to_pb(
            self.services.runs.cancel(request.run_id, request.reason, actor)))

    async def WatchRun(self, request: pb.GetRunRequest, context: Context) -> AsyncIterator[pb.Run]:
        latest: Latest[PipelineRun] = Latest()
        unsubscribe = await _call(
            context, lambda: self.services.runs.subscribe(latest.put, request.run_id, current=True))
        try:
            async for run in latest.until(lambda r: r.state.finished):
                yield run_to_pb(run)
        finally:
            unsubscribe()

    # --- rollouts ----------------------------------------------------------------

    async def StartRollout(self, request: pb.StartRolloutRequest, context: Context) -> pb.Rollout:
        return await rollout_rpc.start_rollout(self.services.rollouts, request, _actor(context), context)

    async def GetRollout(self, request: pb.GetRolloutRequest, context: Context) -> pb.Rollout:
        rollouts = self.services.rollouts
        return await _call(context, lambda: rollout_rpc.rollout_to_pb(rollouts.get(request.rollout_id)))

    async def WatchRollout(self, request: pb.GetRolloutRequest, context: Context) -> AsyncIterator[pb.Rollout]:
        async for record in rollout_rpc.watch_rollout(self.services.rollouts, request, context):
            yield record

    async def CancelRollout(self, request: pb.GetRolloutRequest, context: Context) -> pb.Rollout:
        rollouts = self.services.rollouts
        return await _call(context, lambda: rollout_rpc.rollout_to_pb(rollouts.cancel(request.rollout_id)))

    # --- logs --------------------------------------------------------------------

    async def QueryLogs(self, request: pb.LogQuery, context: Context) -> pb.LogEntries:
        return await log_rpc.query_logs(await self._logs(context), request, context)

    async def TailLogs(self, request: pb.LogQuery, context: Context) -> AsyncIterator[pb.LogEntries]:
        async for entries in log_rpc.tail_logs(await self._logs(context), request, context):
            yield entries

    async def _logs(self, context: Context) -> LogService:
        if self.logs is None:
            exc = Unavailable("this hub does not collect logs")
            await context.abort(grpc_status(exc), exc.message)
        assert self.logs is not None
        return self.logs

    # --- console extras (console.hub.console_rpc) ---------------------------------

    async def GetNodeHistory(self, request: pb.GetNodeRequest, context: Context) -> pb.JsonValue:
        return await self.console.node_history(request, context)

    async def UpdateNodeLabels(self, request: pb.UpdateNodeLabelsRequest, context: Context) -> pb.Node:
        return await self.console.update_labels(request, context)

    async def IssueAgentToken(self, request: pb.GetNodeRequest, context: Context) -> pb.AgentToken:
        return await self.console.issue_token(request, context)

    async def ListPipelines(self, request: pb.ListPipelinesRequest, context: Context) -> pb.JsonValue:
        return await self.console.pipelines(context)

    async def ListInstances(self, request: pb.ListInstancesRequest, context: Context) -> pb.JsonValue:
        return await self.console.instances(request, context)

    async def ListGameCards(self, request: pb.ListGameCardsRequest, context: Context) -> pb.JsonValue:
        return await self.console.gamecards(context)

    async def LaunchInstance(self, request: pb.LaunchInstanceRequest, context: Context) -> pb.JsonValue:
        return await self.console.launch_instance(request, _actor(context), context)

    async def StopInstance(self, request: pb.StopInstanceRequest, context: Context) -> pb.JsonValue:
        return await self.console.stop_instance(request, _actor(context), context)

    async def InstanceAction(self, request: pb.InstanceActionRequest, context: Context) -> pb.JsonValue:
        return await self.console.instance_action(request, context)

    async def GetHostKey(self, request: pb.GetNodeRequest, context: Context) -> pb.HostKey:
        return await self.console.host_key(request, context)

    async def TrustHostKey(self, request: pb.TrustHostKeyRequest, context: Context) -> pb.HostKey:
        return await self.console.trust_host_key(request, context)

    # --- internals --------------------------------------------------------------

    def _pb(self, node: GameNode) -> pb.Node:
        return node_to_pb(self.live.overlay(node))

    def _snapshot(self, selector: Selector, visible: set[str]) -> list[pb.NodeUpdate]:
        nodes = [n for n in self.services.nodes.nodes.list() if selector.matches(n.labels)]
        visible.update(n.id for n in nodes)
        chunks = [
            pb.NodeUpdate(snapshot=True, nodes=[self._pb(n) for n in nodes[i : i + SNAPSHOT_CHUNK]])
            for i in range(0, len(nodes), SNAPSHOT_CHUNK)
        ] or [pb.NodeUpdate(snapshot=True)]
        chunks[-1].snapshot_done = True
        return chunks

    def _delta(self, ids: set[str], selector: Selector, visible: set[str]) -> pb.NodeUpdate:
        update = pb.NodeUpdate()
        for node_id in sorted(ids):
            node = self.services.nodes.nodes.find(node_id)
            if node is not None and selector.matches(node.labels):
                visible.add(node_id)
                update.nodes.append(self._pb(node))
            elif node_id in visible:  # deleted, or no longer matches
                visible.discard(node_id)
                update.deleted.append(node_id)
        return update


async def _call(context: Context, fn: Callable[[], T]) -> T:
    """`fn()` in a worker thread; a gamenode error ends the call with its gRPC status."""
    try:
        return await asyncio.to_thread(fn)
    except GamenodeError as exc:
        await context.abort(grpc_status(exc), exc.message)


def _actor(context: Context) -> str:
    """Who made the change: the API token's name; on the unix socket (or an unguarded servicer) the
    `x-gamenode-actor` metadata, else "console"."""
    principal = current_principal.get()
    if principal is not None and principal.token_id is not None:
        return principal.name[:64]
    for key, value in context.invocation_metadata() or ():
        if key == "x-gamenode-actor" and isinstance(value, str) and value:
            return value[:64]
    return "console"


def _object(text: str) -> dict[str, Any]:
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise InvalidInput(f"json: not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise InvalidInput(f"json: expected a JSON object of node fields, got {type(data).__name__}")
    return data


def _seconds(ts: timestamp_pb2.Timestamp) -> float:
    return ts.seconds + ts.nanos * 1e-9
