"""The hub's REST API as one FastAPI app over the services (and, in a hub, its agents)."""

from __future__ import annotations

from fastapi import FastAPI

from agent import __version__
from console.hub.api import agents, gamecards, instances, nodes, pipelines, platforms, rollouts, runs
from console.hub.api import logs as logs_api
from console.hub.errors import install_error_handlers
from console.hub.live import LiveState
from console.hub.sessions import SessionRegistry
from console.service import Services
from console.service.logs import LogService

__all__ = ["create_app"]

VERSION = __version__
"""The gamenode version: one place, `agent.__version__` (pyproject reads it too)."""


def create_app(
    services: Services, live: LiveState | None = None, registry: SessionRegistry | None = None,
    logs: LogService | None = None,
) -> FastAPI:
    """The app over `services`; `live` fills nodes' metrics, `registry` reaches agents (ping),
    `logs` answers log queries.

    Without a registry (no gRPC side) the routes that need an agent answer 503 (starting a run
    too: the run service has no dispatcher); without `logs`, the log routes do.
    """
    app = FastAPI(
        title="gamenode hub",
        version=VERSION,
        description="Nodes, instances, game cards and platforms of a gamenode fleet. "
        "Errors are JSON: `{error, message, details}`.",
    )
    app.state.services = services
    app.state.live = live or LiveState()
    app.state.registry = registry
    app.state.logs = logs
    install_error_handlers(app)
    for module in (nodes, agents, instances, gamecards, platforms, pipelines, runs, logs_api, rollouts):
        app.include_router(module.router)

    @app.get("/healthz", tags=["hub"], summary="Liveness")
    def healthz() -> dict[str, str]:
        return {"status": "ok", "version": VERSION}

    return app
