"""`HubService.StartRollout` / `GetRollout` / `WatchRollout` / `CancelRollout`; `HubServicer` delegates here.

`WatchRollout` answers the rollout as it is, then the rollout again after every
change (a host's step or result; a reader that falls behind gets the newest
state, not every one in between) until it has finished, then ends. It is fed by
the rollout service's listeners, never by polling.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any, TypeVar

from grpc import aio

from console.errors import GamenodeError
from console.hub.convert import timestamp
from console.hub.errors import grpc_status
from console.hub.watch import Latest
from console.models import RolloutHost, RolloutRecord, RolloutStep, StepState
from console.service import RolloutRequest, RolloutService
from console.validation import validate
from proto import gamenode_pb2 as pb

__all__ = ["request_from_pb", "rollout_to_pb", "start_rollout", "watch_rollout"]

T = TypeVar("T")
Context = aio.ServicerContext[Any, Any]


def request_from_pb(request: pb.StartRolloutRequest) -> RolloutRequest:
    """The request as a `RolloutRequest` (0 and empty mean the default); InvalidInput with field paths."""
    fields: dict[str, Any] = {
        "nodes": list(request.nodes), "selector": request.selector or None,
        "all_without_agent": request.all_without_agent, "action": request.action or "install",
        "canary": request.canary, "trust_new_host_keys": request.trust_new_host_keys,
        "bundle": request.bundle or None, "wheelhouse": request.wheelhouse or None,
    }
    if request.parallel:
        fields["parallel"] = request.parallel
    if request.timeout_s:
        fields["timeout"] = request.timeout_s
    return validate(RolloutRequest, fields, "rollout")


def rollout_to_pb(record: RolloutRecord) -> pb.Rollout:
    msg = pb.Rollout(
        id=record.id, action=record.action.value, state=record.state.value, error=record.error,
        version=record.version or "", created_at=timestamp(record.created_at),
        hosts=[_host_to_pb(h) for h in record.hosts],
    )
    if record.started_at is not None:
        msg.started_at.CopyFrom(timestamp(record.started_at))
    if record.finished_at is not None:
        msg.finished_at.CopyFrom(timestamp(record.finished_at))
    return msg


def _host_to_pb(host: RolloutHost) -> pb.RolloutHost:
    return pb.RolloutHost(
        node_id=host.node_id, host=host.host, from_version=host.from_version or "",
        to_version=host.to_version or "", result=host.result, error=host.error, duration_s=host.duration_s,
        steps=[_step_to_pb(s) for s in host.steps],
    )


_STEP_TO_PB: dict[StepState, pb.StepState] = {
    StepState.PENDING: pb.STEP_STATE_PENDING,
    StepState.RUNNING: pb.STEP_STATE_RUNNING,
    StepState.SUCCEEDED: pb.STEP_STATE_SUCCEEDED,
    StepState.FAILED: pb.STEP_STATE_FAILED,
    StepState.SKIPPED: pb.STEP_STATE_SKIPPED,
    StepState.CANCELLED: pb.STEP_STATE_CANCELLED,
}


def _step_to_pb(step: RolloutStep) -> pb.RolloutStep:
    msg = pb.RolloutStep(name=step.name, state=_STEP_TO_PB[step.state], message=step.message)
    if step.started_at is not None:
        msg.started_at.CopyFrom(timestamp(step.started_at))
    if step.finished_at is not None:
        msg.finished_at.CopyFrom(timestamp(step.finished_at))
    return msg


async def call(context: Context, fn: Callable[[], T]) -> T:
    """`fn()` in a worker thread; a gamenode error ends the call with its gRPC status."""
    try:
        return await asyncio.to_thread(fn)
    except GamenodeError as exc:
        await context.abort(grpc_status(exc), exc.message)


async def start_rollout(
    rollouts: RolloutService, request: pb.StartRolloutRequest, actor: str, context: Context
) -> pb.Rollout:
    return await call(context, lambda: rollout_to_pb(rollouts.start(request_from_pb(request), actor)))


async def watch_rollout(
    rollouts: RolloutService, request: pb.GetRolloutRequest, context: Context
) -> AsyncIterator[pb.Rollout]:
    latest: Latest[RolloutRecord] = Latest()
    unsubscribe = await call(context, lambda: rollouts.subscribe(latest.put, request.rollout_id, current=True))
    try:
        async for record in latest.until(lambda r: r.state.finished):
            yield rollout_to_pb(record)
    finally:
        unsubscribe()
