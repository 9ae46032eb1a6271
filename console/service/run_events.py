"""How one agent event changes a pipeline run: pure functions, no I/O.

Run states (`RunState`):

    pending ──► dispatched ──► running ──► succeeded | failed
       │            │             │
       └────────────┴─────────────┴──► cancelling ──► cancelled (or succeeded | failed:
                                                      the run ended before the cancel took)

A pending or dispatched run that reports anything is running. Finished runs
ignore every later event (a resent event changes nothing twice).

A step goes pending → running → succeeded | failed | skipped | cancelled, and
back to running on a retry (a higher `attempt`). An event older than what is
recorded (a lower attempt, or `running` after the step finished in the same
attempt) is stale and ignored. A `running` event for a step already running in
the same attempt only moves its progress and message: `Change.progress`, kept
in memory by the service, never written.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from console.models import PipelineRun, RunState, StepRecord, StepState

__all__ = ["RUN_TRANSITIONS", "Change", "RunEvent", "apply_event", "failed_step_error", "finish"]

R = RunState
RUN_TRANSITIONS: dict[RunState, frozenset[RunState]] = {
    R.PENDING: frozenset({R.DISPATCHED, R.RUNNING, R.SUCCEEDED, R.FAILED, R.CANCELLING, R.CANCELLED}),
    R.DISPATCHED: frozenset({R.RUNNING, R.SUCCEEDED, R.FAILED, R.CANCELLING, R.CANCELLED}),
    R.RUNNING: frozenset({R.SUCCEEDED, R.FAILED, R.CANCELLING, R.CANCELLED}),
    R.CANCELLING: frozenset({R.SUCCEEDED, R.FAILED, R.CANCELLED}),
    R.SUCCEEDED: frozenset(),
    R.FAILED: frozenset(),
    R.CANCELLED: frozenset(),
}

_RUN_FINAL = {StepState.SUCCEEDED: R.SUCCEEDED, StepState.FAILED: R.FAILED, StepState.CANCELLED: R.CANCELLED}


@dataclass(frozen=True)
class RunEvent:
    """A `PipelineEvent` from an agent, as plain values (`console.hub.convert.run_event_from_pb`)."""

    run_id: str
    step: str = ""
    """"" for the run as a whole."""
    state: StepState | None = None
    """None: a state this hub does not know (the event is ignored)."""
    progress: int = 0
    message: str = ""
    at: datetime | None = None
    outputs: dict[str, Any] = field(default_factory=dict)
    attempt: int = 0
    action: str = ""


@dataclass(frozen=True)
class Change:
    """What an event does: the run to write (None: nothing to write) and a progress-only update."""

    run: PipelineRun | None = None
    progress: tuple[str, int, str] | None = None
    """(step, progress, message) of a step still running in the same attempt."""


def apply_event(run: PipelineRun, event: RunEvent, now: datetime) -> Change:
    """The change `event` makes to `run` (which must be the event's run)."""
    if run.state.finished or event.state is None:
        return Change()
    at = event.at or now
    if not event.step:
        return Change(_run_level(run, event.state, event.message, at))
    started = _started(run, at)
    change = _step_level(started, event, at)
    if change.run is None and started is not run:
        return Change(started, change.progress)
    return change


def finish(run: PipelineRun, state: RunState, error: str | None, at: datetime) -> PipelineRun:
    """`run` in final `state` (which the caller checked is allowed)."""
    update: dict[str, Any] = {"state": state, "finished_at": at, "updated_at": at}
    if state != R.SUCCEEDED:
        update["error"] = (error or state.value)[:4096]
    return run.model_copy(update=update)


def _run_level(run: PipelineRun, state: StepState, message: str, at: datetime) -> PipelineRun | None:
    if state == StepState.RUNNING:
        return _started(run, at) if run.state != R.RUNNING else None
    final = _RUN_FINAL.get(state)
    if final is None or final not in RUN_TRANSITIONS[run.state]:
        return None
    if final == R.CANCELLED:
        message = message or run.cancel_reason or "cancelled"
    elif final == R.FAILED:
        message = message or failed_step_error(run) or "failed"
    return finish(run, final, message, at)


def _started(run: PipelineRun, at: datetime) -> PipelineRun:
    """A pending or dispatched run that reports anything is running."""
    if run.state in (R.PENDING, R.DISPATCHED):
        return run.model_copy(update={"state": R.RUNNING, "started_at": run.started_at or at, "updated_at": at})
    if run.started_at is None:
        return run.model_copy(update={"started_at": at, "updated_at": at})
    return run


def _step_level(run: PipelineRun, event: RunEvent, at: datetime) -> Change:
    assert event.state is not None
    step = run.step(event.step)
    if step is None:  # not one of the pipeline's steps: an on_failure cleanup step
        added = StepRecord(name=event.step, action=event.action, cleanup=True)
        run = run.model_copy(update={"steps": [*run.steps, added]})
        return Change(_with_step(run, _step_change(added, event, at) or added, at))
    if event.state == StepState.RUNNING and step.state == StepState.RUNNING and event.attempt <= step.attempt:
        return Change(progress=(step.name, _percent(event.progress), event.message))
    new = _step_change(step, event, at)
    return Change(_with_step(run, new, at) if new is not None else None)


def _step_change(step: StepRecord, event: RunEvent, at: datetime) -> StepRecord | None:
    """The step after `event`, or None when the event is stale or a repeat."""
    state = event.state
    attempt = event.attempt or max(step.attempt, 1)
    if state is None or attempt < step.attempt:
        return None
    if state == StepState.PENDING:
        return None if step.state != StepState.PENDING or step.action or not event.action else \
            step.model_copy(update={"action": event.action})
    if step.state.finished and attempt == step.attempt:
        return None  # finished in this attempt already: a resent or late event
    update: dict[str, Any] = {"state": state, "attempt": attempt, "message": event.message[:4096],
                              "action": step.action or event.action}
    if state == StepState.RUNNING:
        update.update(progress=_percent(event.progress), started_at=step.started_at or at, finished_at=None)
    else:
        update.update(finished_at=at, started_at=step.started_at or at,
                      progress=100 if state == StepState.SUCCEEDED else step.progress)
        if state == StepState.SUCCEEDED:
            update["outputs"] = dict(event.outputs)
    return step.model_copy(update=update)


def _with_step(run: PipelineRun, step: StepRecord, at: datetime) -> PipelineRun:
    steps = [step if s.name == step.name else s for s in run.steps]
    return run.model_copy(update={"steps": steps, "updated_at": at})


def failed_step_error(run: PipelineRun) -> str:
    """"step <name> failed: <message>" for the first failed (non-cleanup) step; "" when none failed."""
    failed = next((s for s in run.steps if s.state == StepState.FAILED and not s.cleanup), None)
    if failed is None:
        return ""
    return f"step {failed.name} failed: {failed.message}" if failed.message else f"step {failed.name} failed"


def _percent(value: int) -> int:
    return max(0, min(100, value))

