"""A node's agent: its credential, its metrics history, a ping over its stream."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Query

from console.errors import Conflict, TimedOut, Unavailable
from console.hub.api.deps import Live, Registry, Svc
from console.hub.auth import ADMIN, OPERATOR
from console.hub.convert import sample_to_dict, timestamp
from console.hub.schemas import AgentToken, MetricsHistory, PingAnswer
from console.models import utcnow
from proto import gamenode_pb2 as pb

router = APIRouter(prefix="/api/v1/nodes", tags=["agents"])

PING_TIMEOUT = 10.0
"""Seconds an agent has to ack a ping."""


@router.post(
    "/{node_id}/token", dependencies=[ADMIN], status_code=201, summary="Issue (or rotate) the node agent's credential")
def issue_token(svc: Svc, node_id: str) -> AgentToken:
    """A single-use join token `ID.SECRET`, valid until `expires_at`: the agent exchanges it (with a CSR)
    for its client certificate. The token is in this answer only; the hub keeps an HMAC of it. Issuing
    revokes the node's certificate and any earlier token: a connected agent is disconnected at once."""
    issued = svc.credentials.issue_join_token(node_id)
    return AgentToken(node_id=node_id, token=issued.token, expires_at=issued.expires_at)


@router.delete("/{node_id}/token", dependencies=[ADMIN], status_code=204, summary="Revoke the node agent's credential")
def revoke_token(svc: Svc, node_id: str) -> None:
    """The node's join token and certificates are forgotten: its agent, if connected, is disconnected
    at once and refused until it joins again with a new token."""
    svc.credentials.revoke(node_id)


@router.get("/{node_id}/metrics", summary="The node's metrics history (in memory, about the last hour)")
async def node_metrics(
    svc: Svc, live: Live, node_id: str,
    since: Annotated[datetime | None, Query(description="Samples taken at or after (ISO 8601; UTC if no zone)")] = None,
    until: Annotated[datetime | None, Query(description="Samples taken at or before")] = None,
) -> MetricsHistory:
    svc.nodes.get_node(node_id)
    samples = live.history(node_id, _unix(since), _unix(until))
    return MetricsHistory(node_id=node_id, samples=[sample_to_dict(s) for s in samples])


@router.post("/{node_id}/ping", dependencies=[OPERATOR], summary="Ping the node's agent over its stream")
async def ping(svc: Svc, registry: Registry, node_id: str) -> PingAnswer:
    """409 when the agent is not connected, 504 when it does not answer within 10 s."""
    svc.nodes.get_node(node_id)
    if not registry.connected(node_id):
        raise Conflict(f"node {node_id!r} is not connected")
    started = time.perf_counter()
    ack = registry.send_command(node_id, pb.Command(ping=pb.Ping(sent_at=timestamp(utcnow()))))
    try:
        answer = await asyncio.wait_for(ack, PING_TIMEOUT)
    except TimeoutError:
        raise TimedOut(f"node {node_id!r} did not answer a ping within {PING_TIMEOUT:g} s") from None
    rtt_ms = (time.perf_counter() - started) * 1000
    if not answer.ok:
        raise Unavailable(f"node {node_id!r} refused the ping: {answer.error or 'no reason given'}")
    return PingAnswer(node_id=node_id, rtt_ms=round(rtt_ms, 3))


def _unix(value: datetime | None) -> float | None:
    if value is None:
        return None
    return (value if value.tzinfo else value.replace(tzinfo=UTC)).timestamp()
