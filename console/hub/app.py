"""The hub's REST API as one FastAPI app over the services."""

from __future__ import annotations

from fastapi import FastAPI

from console.hub.api import gamecards, instances, nodes, platforms
from console.hub.errors import install_error_handlers
from console.service import Services

__all__ = ["create_app"]

VERSION = "0.1.0"


def create_app(services: Services) -> FastAPI:
    app = FastAPI(
        title="gamenode hub",
        version=VERSION,
        description="Nodes, instances, game cards and platforms of a gamenode fleet. "
        "Errors are JSON: `{error, message, details}`.",
    )
    app.state.services = services
    install_error_handlers(app)
    for module in (nodes, instances, gamecards, platforms):
        app.include_router(module.router)

    @app.get("/healthz", tags=["hub"], summary="Liveness")
    def healthz() -> dict[str, str]:
        return {"status": "ok", "version": VERSION}

    return app
