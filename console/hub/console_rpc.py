"""The console's extra `HubService` RPCs; `HubServicer` delegates here.

Each is a thin call into a service, answering what the matching REST route
answers (`console.hub.api`): `JsonValue.json` is that route's JSON (the
models' `model_dump(mode="json")`), so both APIs say the same thing.

    GetNodeHistory    GET    /api/v1/nodes/{id}/history
    UpdateNodeLabels  PATCH  /api/v1/nodes/{id}/labels
    IssueAgentToken   POST   /api/v1/nodes/{id}/token
    ListPipelines     GET    /api/v1/pipelines
    ListInstances     GET    /api/v1/instances
    ListGameCards     GET    /api/v1/gamecards
    LaunchInstance    POST   /api/v1/instances
    StopInstance      DELETE /api/v1/instances/{id}
    InstanceAction    POST   /api/v1/instances/{id}/actions
    GetHostKey        GET    /api/v1/nodes/{id}/ssh/host-key
    TrustHostKey      POST   /api/v1/nodes/{id}/ssh/trust

Launching, stopping and container actions go through the hub's one
`LaunchService` (the REST app's too), so placement and agents behave alike.
Errors end the call with the status `console.hub.errors.grpc_status` maps
them to, the error's message as details.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable, Iterable
from typing import Any, TypeVar

from grpc import aio
from pydantic import BaseModel

from console.errors import GamenodeError, Unavailable
from console.hub.convert import dict_from_struct, timestamp
from console.hub.errors import grpc_status
from console.models import GameNode
from console.service import GameCardQuery, InstanceQuery, PipelineInfo, Services
from console.service.launch import LaunchRequest, LaunchService
from console.service.rollouts import HostKeyInfo
from console.validation import validate
from proto import gamenode_pb2 as pb

__all__ = ["ConsoleRpc"]

T = TypeVar("T")
Context = aio.ServicerContext[Any, Any]


class ConsoleRpc:
    """The console RPCs over one set of services and the hub's launch service."""

    def __init__(
        self, services: Services, launch: LaunchService | None, node_pb: Callable[[GameNode], pb.Node]
    ) -> None:
        self.services = services
        self.launch = launch
        """None outside a hub with agent sessions: launching, stopping and actions answer UNAVAILABLE."""
        self.node_pb = node_pb
        """A node as answered (with its live metrics)."""

    # --- nodes ------------------------------------------------------------------

    async def node_history(self, request: pb.GetNodeRequest, context: Context) -> pb.JsonValue:
        return await call(context, lambda: json_list(self.services.nodes.status_history(request.id)))

    async def update_labels(self, request: pb.UpdateNodeLabelsRequest, context: Context) -> pb.Node:
        nodes = self.services.nodes
        return await call(context, lambda: self.node_pb(
            nodes.update_labels(request.id, dict(request.set), list(request.remove))))

    async def issue_token(self, request: pb.GetNodeRequest, context: Context) -> pb.AgentToken:
        issued = await call(context, lambda: self.services.credentials.issue_join_token(request.id))
        return pb.AgentToken(node_id=request.id, token=issued.token, expires_at=timestamp(issued.expires_at))

    # --- catalog ------------------------------------------------------------------

    async def pipelines(self, context: Context) -> pb.JsonValue:
        catalog = self.services.runs.catalog
        return await call(context, lambda: json_list(PipelineInfo.of(e) for e in catalog.list()))

    async def instances(self, request: pb.ListInstancesRequest, context: Context) -> pb.JsonValue:
        def run() -> pb.JsonValue:
            query = validate(InstanceQuery, {
                "node_id": request.node_id or None, "game": request.game or None,
                "state": request.state or None, "limit": request.limit or None,
            }, "query")
            return json_list(self.services.instances.list_instances(query).items)

        return await call(context, run)

    async def gamecards(self, context: Context) -> pb.JsonValue:
        cards = self.services.gamecards  # secret version params read `***`, as in the REST answer
        return await call(context, lambda: json_list(map(cards.redacted, cards.list_cards(GameCardQuery()).items)))

    # --- instances ----------------------------------------------------------------

    async def launch_instance(self, request: pb.LaunchInstanceRequest, actor: str, context: Context) -> pb.JsonValue:
        def run() -> pb.JsonValue:
            body = validate(LaunchRequest, {
                "game": request.game, "version": request.version or None, "platform": request.platform or None,
                "selector": request.selector or None, "policy": request.policy or "spread",
                "params": dict_from_struct(request.params) if request.HasField("params") else {},
                "node_id": request.node_id or None,
            }, "launch")
            return json_value(self._launcher().launch(body, created_by=actor))

        return await call(context, run)

    async def stop_instance(self, request: pb.StopInstanceRequest, actor: str, context: Context) -> pb.JsonValue:
        return await call(context, lambda: json_value(
            self._launcher().stop(request.instance_id, force=request.force, created_by=actor)))

    async def instance_action(self, request: pb.InstanceActionRequest, context: Context) -> pb.JsonValue:
        async def run() -> pb.JsonValue:
            return json_value(await self._launcher().action(request.instance_id, request.action))

        return await call_async(context, run)

    def _launcher(self) -> LaunchService:
        if self.launch is None:
            raise Unavailable("this hub does not launch instances (no agent sessions)")
        return self.launch

    # --- ssh host keys ------------------------------------------------------------

    async def host_key(self, request: pb.GetNodeRequest, context: Context) -> pb.HostKey:
        rollouts = self.services.rollouts
        return await call_async(context, lambda: _host_key(rollouts.fingerprint(request.id)))

    async def trust_host_key(self, request: pb.TrustHostKeyRequest, context: Context) -> pb.HostKey:
        rollouts = self.services.rollouts
        return await call_async(context, lambda: _host_key(
            rollouts.trust(request.node_id, request.fingerprint or None, request.replace)))


async def _host_key(info: Awaitable[HostKeyInfo]) -> pb.HostKey:
    key = await info
    return pb.HostKey(node_id=key.node_id, host=key.host, port=key.port, fingerprint=key.fingerprint,
                      verdict=key.verdict)


def json_value(model: BaseModel) -> pb.JsonValue:
    """A model as the REST API answers it."""
    return pb.JsonValue(json=model.model_dump_json())


def json_list(models: Iterable[BaseModel]) -> pb.JsonValue:
    """Models as the JSON array a REST list route answers."""
    return pb.JsonValue(json=json.dumps([m.model_dump(mode="json") for m in models]))


async def call(context: Context, fn: Callable[[], T]) -> T:
    """`fn()` in a worker thread; a gamenode error ends the call with its gRPC status."""
    try:
        return await asyncio.to_thread(fn)
    except GamenodeError as exc:
        await context.abort(grpc_status(exc), exc.message)


async def call_async(context: Context, fn: Callable[[], Awaitable[T]]) -> T:
    """`await fn()` on the loop; a gamenode error ends the call with its gRPC status."""
    try:
        return await fn()
    except GamenodeError as exc:
        await context.abort(grpc_status(exc), exc.message)
