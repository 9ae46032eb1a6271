"""Who is calling the REST API, and may they: bearer tokens, roles, and the audit of every change.

Every request but `/healthz` and the docs carries `Authorization: Bearer ID.SECRET`
(an API token, `console.service.api_tokens`). Each router is included with the
`VIEWER` dependency (every read), and each route that changes something adds the
role it needs (`OPERATOR` or `ADMIN`) to its decorator:

    @router.post("", status_code=201, dependencies=[ADMIN])

The caller is resolved once per request and kept on `request.state.principal`
(the audit and the status history name it). A missing, unknown or expired
token is a 401 `unauthenticated` with `WWW-Authenticate: Bearer`; a valid one
whose role is too low a 403 `forbidden`, both in the usual `{error, message,
details}` shape. `create_app(..., auth=None)` (in-process tests only) lets
every request in as an admin.

`AuditMiddleware` writes an entry to the audit log (`console.service.audit`)
for every POST, PUT, PATCH and DELETE that reached a route, refused or not:
who, which route (`POST /api/v1/nodes/{node_id}/token`), the record (from the
path, else the `id` of the answer) and the status. Never a body or a header.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Request
from fastapi.params import Depends as DependsParam
from fastapi.responses import JSONResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from console.errors import GamenodeError
from console.hub.errors import error_body
from console.models import Role
from console.service import ApiTokenService, AuditLog, Services

__all__ = [
    "ADMIN",
    "ANONYMOUS",
    "OPEN_PATHS",
    "OPERATOR",
    "UNIX_SOCKET",
    "VIEWER",
    "AuditMiddleware",
    "AuthFailure",
    "Authenticator",
    "Principal",
    "Scheme",
    "install_auth",
    "principal_of",
    "requires",
    "route_role",
    "route_roles",
]

log = logging.getLogger(__name__)

OPEN_PATHS = frozenset({"/healthz", "/docs", "/docs/oauth2-redirect", "/openapi.json", "/redoc"})
"""What anyone may read: liveness and the API's description."""
MUTATING = frozenset({"POST", "PUT", "PATCH", "DELETE"})
_BODY_LIMIT = 64 * 1024
"""Bytes of an answer the audit reads for the new record's id (answers are small JSON)."""


@dataclass(frozen=True, slots=True)
class Principal:
    """Who a call is from: a token's name and role, the local unix socket, or nobody yet."""

    name: str
    role: Role | None
    token_id: str | None = None
    """The API token's id (never its secret); None for the socket and for open apps."""

    def may(self, needed: Role) -> bool:
        return self.role is not None and self.role.covers(needed)


ANONYMOUS = Principal("anonymous", None)
UNIX_SOCKET = Principal("unix socket", Role.ADMIN)
"""A console on the hub's unix socket (0600: this user only) is an admin without a token."""
OPEN = Principal("api", Role.ADMIN)
"""Every caller of an app made without an authenticator (in-process tests)."""


class AuthFailure(GamenodeError):
    """A request without a valid token (401) or with too low a role (403)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code

    @classmethod
    def unauthenticated(cls, why: str) -> AuthFailure:
        return cls("unauthenticated", why)

    @classmethod
    def forbidden(cls, principal: Principal, needed: Role, what: str) -> AuthFailure:
        return cls("forbidden", f"{what} needs the {needed} role; token {principal.name!r} has {principal.role}")

    @property
    def http_status(self) -> int:
        return 401 if self.code == "unauthenticated" else 403


class Authenticator:
    """Bearer tokens to principals, over the API token service."""

    def __init__(self, tokens: ApiTokenService) -> None:
        self.tokens = tokens

    @classmethod
    def for_hub(cls, services: Services) -> Authenticator:
        """The hub's: over its tokens, with `DATA_DIR/admin.token` written if it is missing."""
        services.api_tokens.ensure_admin_token()
        return cls(services.api_tokens)

    def principal(self, token: str) -> Principal | None:
        record = self.tokens.authenticate(token)
        return None if record is None else Principal(record.name, record.role, record.id)

    def from_header(self, value: str | None) -> Principal:
        """The principal of an `Authorization` value (`Bearer TOKEN`); AuthFailure when there is none."""
        scheme, _, token = (value or "").strip().partition(" ")
        if not value:
            raise AuthFailure.unauthenticated("no API token: send `Authorization: Bearer TOKEN` (the local admin "
                                              "token is in DATA_DIR/admin.token; `gamenode tokens create` makes more)")
        if scheme.lower() != "bearer" or not token.strip():
            raise AuthFailure.unauthenticated("expected `Authorization: Bearer TOKEN`")
        principal = self.principal(token.strip())
        if principal is None:
            raise AuthFailure.unauthenticated("invalid, revoked or expired API token")
        return principal


# --- REST -----------------------------------------------------------------------------

Scheme = HTTPBearer(auto_error=False, description="An API token `ID.SECRET` (`gamenode tokens create`).")
"""Shown in the OpenAPI description (the docs' Authorize button); the check itself is `requires`."""


def principal_of(request: Request) -> Principal | None:
    """The caller of this request once a role check has run (None before)."""
    principal: Principal | None = getattr(request.state, "principal", None)
    return principal


def _resolve(request: Request) -> Principal:
    principal = principal_of(request)
    if principal is None:
        auth: Authenticator | None = getattr(request.app.state, "auth", None)
        if auth is None:
            principal = OPEN
        else:
            request.state.principal = ANONYMOUS  # the audit names a refused caller too
            principal = auth.from_header(request.headers.get("authorization"))
        request.state.principal = principal
    return principal


def requires(role: Role) -> DependsParam:
    """The dependency that lets only callers with `role` (or a higher one) in."""

    def check(
        request: Request, _: Annotated[HTTPAuthorizationCredentials | None, Depends(Scheme)] = None,
    ) -> Principal:
        principal = _resolve(request)
        if not principal.may(role):
            raise AuthFailure.forbidden(principal, role, f"{request.method} {request.url.path}")
        return principal

    check.__name__ = f"requires_{role}"
    check.gamenode_role = role  # type: ignore[attr-defined]  # read by `route_role`
    dependency: DependsParam = Depends(check)
    return dependency


VIEWER = requires(Role.VIEWER)
OPERATOR = requires(Role.OPERATOR)
ADMIN = requires(Role.ADMIN)


def route_role(route: Any) -> Role | None:
    """The highest role a route's dependencies require (None: open to anyone)."""
    found: list[Role] = []

    def walk(dependant: Any) -> None:
        for dep in dependant.dependencies:
            role = getattr(dep.call, "gamenode_role", None)
            if isinstance(role, Role):
                found.append(role)
            walk(dep)

    dependant = getattr(route, "dependant", None)
    if dependant is not None:
        walk(dependant)
    return max(found) if found else None


def route_roles(app: FastAPI) -> dict[tuple[str, str], Role | None]:
    """`(METHOD, path) -> role` for every route of the app (HEAD left out), as served."""
    try:  # FastAPI >= 0.130 keeps included routers whole; this walks the routes as they are served
        from fastapi.routing import iter_route_contexts

        routes: Iterable[Any] = iter_route_contexts(app.routes)
    except ImportError:  # pragma: no cover - older FastAPI: app.routes is flat
        routes = app.routes
    table: dict[tuple[str, str], Role | None] = {}
    for route in routes:
        for method in sorted(getattr(route, "methods", None) or ()):
            if method != "HEAD":
                table[(method, str(route.path))] = route_role(route)
    return table


def install_auth(app: FastAPI, auth: Authenticator | None, audit: AuditLog | None) -> None:
    """Answer auth failures as JSON, and audit every change (`audit` None: nothing is recorded)."""
    app.state.auth = auth

    @app.exception_handler(AuthFailure)
    async def _failure(request: Request, exc: AuthFailure) -> JSONResponse:
        headers = {"WWW-Authenticate": "Bearer"} if exc.http_status == 401 else None
        return JSONResponse(error_body(exc.code, exc.message), status_code=exc.http_status, headers=headers)

    if audit is not None:
        app.add_middleware(AuditMiddleware, audit=audit)


# --- the audit of REST calls ------------------------------------------------------------

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

_PATH_KINDS = {
    "node_id": "node", "instance_id": "instance", "card_id": "gamecard", "platform_id": "platform",
    "run_id": "run", "rollout_id": "rollout", "token_id": "api_token",
}
_PREFIX_KINDS = {
    "nodes": "node", "instances": "instance", "gamecards": "gamecard", "platforms": "platform",
    "runs": "run", "rollouts": "rollout", "tokens": "api_token",
}


class AuditMiddleware:
    """Records every mutating call that reached a route in the audit log (pure ASGI: streams pass)."""

    def __init__(self, app: ASGIApp, audit: AuditLog) -> None:
        self.app = app
        self.audit = audit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] not in MUTATING:
            await self.app(scope, receive, send)
            return
        status = 500
        body = bytearray()

        async def capture(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            elif message["type"] == "http.response.body" and len(body) < _BODY_LIMIT:
                body.extend(message.get("body", b"")[: _BODY_LIMIT - len(body)])
            await send(message)

        try:
            await self.app(scope, receive, capture)
        finally:
            self._record(scope, status, bytes(body))

    def _record(self, scope: Scope, status: int, body: bytes) -> None:
        route = scope.get("route")
        path = getattr(route, "path", None)
        if path is None:
            return  # no route: nothing was changed (404, 405)
        principal = (scope.get("state") or {}).get("principal") or ANONYMOUS
        self.audit.record(
            actor=principal.name, role=principal.role or "", via="rest", action=f"{scope['method']} {path}",
            target=_target(path, scope.get("path_params") or {}, body if status < 300 else b""),
            status=status, detail=_error_code(body) if status >= 400 else None,
        )


def _target(path: str, params: dict[str, Any], body: bytes) -> tuple[str, str] | None:
    for name, kind in _PATH_KINDS.items():
        if name in params:
            return kind, str(params[name])
    prefix_kind = _PREFIX_KINDS.get(path.removeprefix("/api/v1/").split("/")[0])
    return (prefix_kind, _answer_id(body)) if prefix_kind else None


def _answer_id(body: bytes) -> str:
    """The `id` (or `instance.id`) of a JSON answer; "" when it has none."""
    try:
        data = json.loads(body) if body else None
    except ValueError:
        return ""
    if isinstance(data, dict) and isinstance(data.get("instance"), dict) and "id" not in data:
        data = data["instance"]
    value = data.get("id") if isinstance(data, dict) else None
    return value if isinstance(value, str) else ""


def _error_code(body: bytes) -> str | None:
    """The `error` code of an error answer (its message may quote the input, so it is not kept)."""
    try:
        data = json.loads(body) if body else None
    except ValueError:
        return None
    code = data.get("error") if isinstance(data, dict) else None
    return code if isinstance(code, str) else None
