"""What every route needs: the services, the live state, the caller, list answers."""

from __future__ import annotations

from typing import Annotated, TypeVar

from fastapi import Depends, Header, Request, Response

from console.errors import Unavailable
from console.hub.auth import principal_of
from console.hub.live import LiveState
from console.hub.sessions import SessionRegistry
from console.service import Page, Services

__all__ = ["Actor", "Live", "Registry", "Svc", "page_answer"]

T = TypeVar("T")


def _services(request: Request) -> Services:
    services: Services = request.app.state.services
    return services


def _live(request: Request) -> LiveState:
    live: LiveState = request.app.state.live
    return live


def _registry(request: Request) -> SessionRegistry:
    registry: SessionRegistry | None = request.app.state.registry
    if registry is None:
        raise Unavailable("this API is not served by a hub with agent streams")
    return registry


def _actor(request: Request, x_gamenode_actor: Annotated[str | None, Header()] = None) -> str:
    """Who made the change, for node status history and runs: the API token's name; on an app without
    tokens (in-process tests) the `X-Gamenode-Actor` header, else "api"."""
    principal = principal_of(request)
    if principal is not None and principal.token_id is not None:
        return principal.name[:64]
    return (x_gamenode_actor or "api")[:64]


Svc = Annotated[Services, Depends(_services)]
Live = Annotated[LiveState, Depends(_live)]
Registry = Annotated[SessionRegistry, Depends(_registry)]
Actor = Annotated[str, Depends(_actor)]


def page_answer(page: Page[T], response: Response) -> list[T]:
    """A list answer is a JSON array; the count before paging is in `X-Total-Count`."""
    response.headers["X-Total-Count"] = str(page.total)
    return page.items
