"""Agent rollouts over SSH: start one, follow it, cancel it; read and trust a node's SSH host key."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Response
from pydantic import BaseModel, ConfigDict

from console.hub.api.deps import Actor, Svc, page_answer
from console.hub.auth import ADMIN
from console.models import RolloutRecord
from console.service import RolloutQuery, RolloutRequest
from console.service.rollouts import HostKeyInfo

__all__ = ["HostKeyAnswer", "TrustBody", "router"]

router = APIRouter(prefix="/api/v1", tags=["rollouts"])


class TrustBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    fingerprint: str | None = None
    """The fingerprint the operator was shown (`GET .../ssh/host-key`); another key is refused (409)."""
    replace: bool = False
    """Replace the key known_hosts has for the host (a changed key is refused without it)."""


class HostKeyAnswer(BaseModel):
    node_id: str
    host: str
    port: int
    fingerprint: str
    """`SHA256:...`, as `ssh-keygen -l` prints it."""
    verdict: str
    """known, unknown or changed: against the hub's known_hosts."""

    @classmethod
    def of(cls, info: HostKeyInfo) -> HostKeyAnswer:
        return cls(node_id=info.node_id, host=info.host, port=info.port, fingerprint=info.fingerprint,
                   verdict=info.verdict)


@router.post("/rollouts", dependencies=[ADMIN], status_code=202, summary="Start an agent rollout over SSH")
def start_rollout(svc: Svc, actor: Actor, body: RolloutRequest) -> RolloutRecord:
    """Exactly one of `nodes`, `selector`, `all_without_agent`. 422 naming each node that is unknown or
    has no `ssh`, or when none is selected; 409 for nodes in another rollout. The rollout runs on the
    hub: follow it with `GET /api/v1/rollouts/{id}` or gRPC `WatchRollout`."""
    return svc.rollouts.start(body, actor)


@router.get("/rollouts", summary="List rollouts, newest first")
def list_rollouts(svc: Svc, response: Response, query: Annotated[RolloutQuery, Query()]) -> list[RolloutRecord]:
    return page_answer(svc.rollouts.list_rollouts(query), response)


@router.get("/rollouts/{rollout_id}", summary="Get a rollout with each host's steps")
def get_rollout(svc: Svc, rollout_id: str) -> RolloutRecord:
    return svc.rollouts.get(rollout_id)


@router.post("/rollouts/{rollout_id}/cancel", dependencies=[ADMIN], summary="Cancel a rollout")
def cancel_rollout(svc: Svc, rollout_id: str) -> RolloutRecord:
    """Every host finishes or undoes its current step (on the old version or the new, never half-way);
    hosts not started are left alone. 409 for a rollout that has finished."""
    return svc.rollouts.cancel(rollout_id)


@router.get("/nodes/{node_id}/ssh/host-key", dependencies=[ADMIN], summary="The SSH host key a node presents now")
async def host_key(svc: Svc, node_id: str) -> HostKeyAnswer:
    """Its fingerprint and whether the hub's known_hosts knows it; 503 when sshd cannot be reached."""
    return HostKeyAnswer.of(await svc.rollouts.fingerprint(node_id))


@router.post("/nodes/{node_id}/ssh/trust", dependencies=[ADMIN], summary="Trust the SSH host key a node presents now")
async def trust_host_key(svc: Svc, node_id: str, body: TrustBody | None = None) -> HostKeyAnswer:
    """Adds it to the hub's known_hosts. 409 when the key is not the `fingerprint` given, or it
    replaces a known one without `replace`."""
    body = body or TrustBody()
    return HostKeyAnswer.of(await svc.rollouts.trust(node_id, body.fingerprint, body.replace))
