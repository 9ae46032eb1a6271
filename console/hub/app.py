"""The hub's REST API as one FastAPI app over the services (and, in a hub, its agents)."""

from __future__ import annotations

from fastapi import FastAPI

from agent import __version__
from console.hub import metrics as metrics_api
from console.hub.api import agents, gamecards, instances, nodes, pipelines, platforms, rollouts, runs, tokens
from console.hub.api import audit as audit_api
from console.hub.api import logs as logs_api
from console.hub.auth import VIEWER, Authenticator, install_auth
from console.hub.errors import install_error_handlers
from console.hub.live import LiveState
from console.hub.openapi import document_errors
from console.hub.sessions import SessionRegistry
from console.service import Services
from console.service.logs import LogService

__all__ = ["create_app"]

VERSION = __version__
"""The gamenode version: one place, `agent.__version__` (pyproject reads it too)."""


def create_app(
    services: Services, live: LiveState | None = None, registry: SessionRegistry | None = None,
    logs: LogService | None = None, auth: Authenticator | None = None,
) -> FastAPI:
    """The app over `services`; `live` fills nodes' metrics, `registry` reaches agents (ping),
    `logs` answers log queries.

    Without a registry (no gRPC side) the routes that need an agent answer 503 (starting a run
    too: the run service has no dispatcher); without `logs`, the log routes do.

    `auth` checks every request's API token and role (`console.hub.auth`); without it every caller is
    an admin, which only in-process tests want: the hub always passes one.
    """
    app = FastAPI(
        title="gamenode hub",
        version=VERSION,
        description="Nodes, instances, game cards and platforms of a gamenode fleet. "
        "Errors are JSON: `{error, message, details}`. Every call but /healthz and the docs needs "
        "`Authorization: Bearer TOKEN` (401 without a valid one, 403 when its role is too low).",
    )
    app.state.services = services
    app.state.live = live or LiveState()
    app.state.registry = registry
    app.state.logs = logs
    install_error_handlers(app)
    install_auth(app, auth, services.audit)
    for module in (nodes, agents, instances, gamecards, platforms, pipelines, runs, logs_api, rollouts, tokens,
                   audit_api, metrics_api):
        app.include_router(module.router, dependencies=[VIEWER])  # each change needs more (its own route)

    @app.get("/healthz", tags=["hub"], summary="Liveness")
    def healthz() -> dict[str, str]:
        return {"status": "ok", "version": VERSION}

    document_errors(app)
    return app
