"""Who is calling `HubService`, and may they: a role per RPC, checked before the RPC runs.

`guard_hub_servicer(servicer, auth, audit)` wraps every RPC of a `HubServicer`.
A call on the hub's unix socket (`context.peer()` starts with `unix:`; the
socket is 0600) is an admin without a token; any other call must carry
`authorization: Bearer ID.SECRET` metadata (an API token) whose role is at
least the RPC's in `RPC_ROLES`. Without a valid token the call ends with
UNAUTHENTICATED, with too low a role PERMISSION_DENIED, before the servicer
sees it. `RPC_ROLES` must name every RPC of the proto's HubService (a test
holds it to the descriptor), so a new RPC cannot slip in unguarded: one
missing from it is refused to everyone but the unix socket's admin.

The RPCs in `AUDITED` (every one that changes something) leave an entry in
the audit log as they end, refused or not: who, `HubService.Method`, the
record (a request field, else the answer's `id`) and the gRPC status name.

The caller is in `current_principal` while the RPC runs (the status history
names the token, `console.hub.hub_service._actor`).
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator, Callable
from contextvars import ContextVar
from typing import Any

import grpc
from grpc import aio

from console.hub.auth import ANONYMOUS, UNIX_SOCKET, Authenticator, AuthFailure, Principal
from console.models import Role
from console.service import AuditLog
from proto import gamenode_pb2 as pb
from proto import gamenode_pb2_grpc as pb_grpc

__all__ = ["AUDITED", "RPC_ROLES", "current_principal", "guard_hub_servicer", "principal_of_call"]

log = logging.getLogger(__name__)

Context = aio.ServicerContext[Any, Any]

_V, _O, _A = Role.VIEWER, Role.OPERATOR, Role.ADMIN

RPC_ROLES: dict[str, Role] = {
    "GetVersion": _V, "ListNodes": _V, "GetNode": _V, "WatchNodes": _V, "GetMetrics": _V, "GetNodeHistory": _V,
    "CreateNode": _A, "UpdateNode": _A, "DeleteNode": _A, "UpdateNodeLabels": _A, "IssueAgentToken": _A,
    "UpdateNodeStatus": _O,
    "StartRun": _O, "CancelRun": _O, "GetRun": _V, "ListRuns": _V, "WatchRun": _V,
    "QueryLogs": _V, "TailLogs": _V,
    "StartRollout": _A, "CancelRollout": _A, "GetRollout": _V, "WatchRollout": _V,
    "ListPipelines": _V, "ListInstances": _V, "ListGameCards": _V,
    "LaunchInstance": _O, "StopInstance": _O, "InstanceAction": _O,
    "GetHostKey": _A, "TrustHostKey": _A,
}
"""The least role each HubService RPC needs (the REST API's roles for the same operations)."""

AUDITED: dict[str, tuple[str, str | None]] = {
    "CreateNode": ("node", None), "UpdateNode": ("node", "id"), "DeleteNode": ("node", "id"),
    "UpdateNodeStatus": ("node", "id"), "UpdateNodeLabels": ("node", "id"), "IssueAgentToken": ("node", "id"),
    "StartRun": ("node", "node_id"), "CancelRun": ("run", "run_id"),
    "StartRollout": ("rollout", None), "CancelRollout": ("rollout", "rollout_id"),
    "LaunchInstance": ("instance", None), "StopInstance": ("instance", "instance_id"),
    "InstanceAction": ("instance", "instance_id"), "TrustHostKey": ("node", "node_id"),
}
"""RPCs that change something: (target kind, the request field naming it; None: the answer's id)."""

current_principal: ContextVar[Principal | None] = ContextVar("gamenode_principal", default=None)

_SERVICE = pb.DESCRIPTOR.services_by_name["HubService"]


def principal_of_call(context: Context, auth: Authenticator) -> Principal:
    """The caller: the unix socket's admin, or the API token in `authorization` (AuthFailure if none)."""
    if (context.peer() or "").startswith("unix:"):
        return UNIX_SOCKET
    value = None
    for key, item in context.invocation_metadata() or ():
        if key == "authorization" and isinstance(item, str):
            value = item
    return auth.from_header(value)


def guard_hub_servicer(
    servicer: pb_grpc.HubServiceServicer, auth: Authenticator, audit: AuditLog | None = None
) -> pb_grpc.HubServiceServicer:
    """`servicer` with every RPC checked against `RPC_ROLES` (and the changes audited)."""
    guarded = pb_grpc.HubServiceServicer()
    for method in _SERVICE.methods:
        inner = getattr(servicer, method.name)
        guard = _Guard(method.name, auth, audit)
        wrapped = guard.stream(inner) if method.server_streaming else guard.unary(inner)
        setattr(guarded, method.name, wrapped)
    return guarded


class _Guard:
    """The check (and audit) around one RPC."""

    def __init__(self, name: str, auth: Authenticator, audit: AuditLog | None) -> None:
        self.name = name
        self.role = RPC_ROLES.get(name, Role.ADMIN)
        self.auth = auth
        self.audit = audit if name in AUDITED else None

    def unary(self, inner: Callable[[Any, Context], Any]) -> Callable[[Any, Context], Any]:
        async def call(request: Any, context: Context) -> Any:
            principal = await self._admit(request, context)
            token = current_principal.set(principal)
            answer = None
            try:
                answer = await inner(request, context)
                return answer
            finally:
                current_principal.reset(token)
                self._record(principal, request, answer, context)

        return call

    def stream(self, inner: Callable[[Any, Context], AsyncIterator[Any]]) -> Callable[[Any, Context], Any]:
        async def call(request: Any, context: Context) -> AsyncIterator[Any]:
            principal = await self._admit(request, context)
            current_principal.set(principal)  # this RPC's own task: nothing to reset
            async for item in inner(request, context):
                yield item

        return call

    async def _admit(self, request: Any, context: Context) -> Principal:
        """The caller if it may make this call; else the call ends (UNAUTHENTICATED / PERMISSION_DENIED)."""
        principal = ANONYMOUS
        try:
            principal = principal_of_call(context, self.auth)
            if not principal.may(self.role):
                raise AuthFailure.forbidden(principal, self.role, f"HubService.{self.name}")
        except AuthFailure as exc:
            refused = grpc.StatusCode.UNAUTHENTICATED if exc.http_status == 401 else grpc.StatusCode.PERMISSION_DENIED
            self._record(principal, request, None, context, status=refused.name)
            await context.abort(refused, exc.message)
            raise  # not reached: abort raises
        return principal

    def _record(
        self, principal: Principal, request: Any, answer: Any, context: Context, status: str | None = None,
    ) -> None:
        if self.audit is None:
            return
        kind, field = AUDITED[self.name]
        target_id = str(getattr(request, field, "")) if field else _answer_id(answer)
        self.audit.record(
            actor=principal.name, role=principal.role or "", via="grpc", action=f"HubService.{self.name}",
            target=(kind, target_id), status=status or _status(context, answer),
        )


def _status(context: Context, answer: Any) -> str:
    """The call's gRPC status name as it ends (OK when it answered and nothing set a code)."""
    code = context.code()
    if isinstance(code, grpc.StatusCode):
        return code.name
    if isinstance(code, int) and not isinstance(code, bool):
        for known in grpc.StatusCode:
            if known.value[0] == code:
                return known.name
    return "OK" if answer is not None else "UNKNOWN"


def _answer_id(answer: Any) -> str:
    """The `id` of an answer message, or of the JSON object (or its `instance`) a JsonValue holds."""
    if answer is None:
        return ""
    if isinstance(answer, pb.JsonValue):
        try:
            data = json.loads(answer.json)
        except ValueError:
            return ""
        if isinstance(data, dict) and isinstance(data.get("instance"), dict):
            data = data["instance"]
        value = data.get("id") if isinstance(data, dict) else None
        return value if isinstance(value, str) else ""
    return str(getattr(answer, "id", ""))
