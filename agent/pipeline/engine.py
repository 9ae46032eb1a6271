"""The pipeline engine: runs a pipeline's steps in order, reports every state change, survives restarts.

    runner = PipelineRunner(session, settings, runtime, ports)
    runner.resume_unfinished()                          # at agent start
    outcome = runner.start(run_id, yaml_text, params, instance_id)   # returns at once
    outcome = runner.cancel(run_id, "operator asked")
    await runner.close()                                # agent shutdown: runs stay resumable

A run, step by step: `when` false → SKIPPED; else RUNNING (attempt n, progress
0-100 at most `PROGRESS_PER_S` events a second per step, 0 and 100 always),
under the step's timeout, retried with doubling backoff (a warning log line per
retry), then SUCCEEDED (outputs kept for `${steps.x.outputs.y}` and sent in the
event) or FAILED. Every step state change is written to the run's record
(`agent.pipeline.runs`) before its event is emitted.

When a step fails, or the run is cancelled (the running step's task is
cancelled: CANCELLED), the run enters its cleanup phase: the steps not run are
marked CANCELLED (never left pending), then the failed (or cancelled) step's
`on_failure` steps run, then the pipeline's `on_failure` steps, each under its
own timeout; a cleanup failure is logged and reported but never replaces the
run's error. The run then ends FAILED ("step 'pull' failed: <error>") or
CANCELLED (the reason). No step is announced as PENDING: the hub lists every
step as pending from the spec it validated; cleanup steps appear (under their
own names) when they run.

Restart: `close()` cancels the runs without recording anything, so the next
agent's `resume_unfinished()` resumes each at its running (or first pending)
step with the stored outputs, or finishes its cleanup. A record that cannot be
read back (or a pipeline that no longer loads) fails the run with the reason.
A run id with a record is never run a second time.

Secrets (`Pipeline.secret_values`) are replaced by `***` in every message,
output and log line a run emits. The runner's `SecretBook` collects the
secrets of every run it knows, so that the instance watcher redacts them
from the output of the containers the runs started (`agent.redaction`). Ports: when a `stop` pipeline succeeds, or a
`create` pipeline fails or is cancelled, the instance's host ports are released.
"""

from __future__ import annotations

import asyncio
import json
import logging
import shutil
import threading
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from agent.errors import PipelineError, StateError, StepFailed
from agent.log import NodeLogger, node_logger
from agent.logbatch import LineBatcher, redact, redact_value
from agent.pipeline.context import StepContext
from agent.pipeline.ports import PortAllocator
from agent.pipeline.runs import FINISHED, RUN_ID, RunRecord, RunStore, StepStateName
from agent.pipeline.spec import Pipeline, Step, load_pipeline, step_inputs
from agent.pipeline.template import evaluate_when
from agent.redaction import SecretBook
from agent.runtime.docker import DockerRuntime
from agent.settings import AgentSettings
from agent.state import CommandOutcome
from proto import gamenode_pb2 as pb

__all__ = ["PROGRESS_PER_S", "RESUMED", "ActionRunner", "EventSink", "PipelineRunner"]

PROGRESS_PER_S = 4.0
"""At most this many progress events a second per step (0 %, 100 % and state changes always go out)."""
RESUMED = "resumed after an agent restart"

ActionRunner = Callable[[StepContext, Any], Awaitable[dict[str, Any]]]
"""An action: `await run(ctx, inputs)` → its outputs (JSON-able); raises StepFailed."""

_STATES: dict[str, pb.StepState] = {
    "pending": pb.STEP_STATE_PENDING, "running": pb.STEP_STATE_RUNNING, "succeeded": pb.STEP_STATE_SUCCEEDED,
    "failed": pb.STEP_STATE_FAILED, "skipped": pb.STEP_STATE_SKIPPED, "cancelled": pb.STEP_STATE_CANCELLED,
}


class EventSink(Protocol):
    """Where a run's events and log lines go (the session's outbox)."""

    def emit_pipeline_event(self, event: pb.PipelineEvent) -> int: ...

    def emit_log(self, chunk: pb.LogChunk) -> int: ...


@dataclass
class _Run:
    """A run in progress: its record, its loaded pipeline and its tasks."""

    record: RunRecord
    pipeline: Pipeline
    params: dict[str, Any]
    secrets: list[str]
    logs: LineBatcher
    task: asyncio.Task[None] | None = None
    main: asyncio.Task[tuple[str, str]] | None = None
    """The steps phase: cancelled by `cancel()`."""
    current: Step | None = None
    """The main step running now (its `on_failure` is the first cleanup)."""
    cancel_reason: str | None = None
    throttles: dict[str, _Throttle] = field(default_factory=dict)

    @property
    def run_id(self) -> str:
        return self.record.run_id


class _Throttle:
    """Progress of one step: at most one event per `interval` s; the latest value is sent when the interval ends."""

    def __init__(self, interval: float, send: Callable[[float, str], None], clock: Callable[[], float]) -> None:
        self.interval = interval
        self._send = send
        self._clock = clock
        self._last: float | None = None
        self._latest: tuple[float, str] | None = None
        self._timer: asyncio.TimerHandle | None = None

    def update(self, percent: float, message: str) -> None:
        now = self._clock()
        if percent in (0.0, 100.0) or self._last is None or now - self._last >= self.interval:
            self._fire(percent, message, now)
            return
        self._latest = (percent, message)
        if self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(self.interval - (now - self._last), self._flush)

    def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._timer, self._latest = None, None

    def _flush(self) -> None:
        self._timer = None
        if self._latest is not None:
            self._fire(*self._latest, self._clock())

    def _fire(self, percent: float, message: str, now: float) -> None:
        self.close()
        self._last = now
        self._send(percent, message)


class PipelineRunner:
    """Runs pipelines for the hub: one task per run, state in `STATE_DIR/runs/`."""

    def __init__(
        self,
        sink: EventSink,
        settings: AgentSettings,
        runtime: DockerRuntime,
        ports: PortAllocator,
        *,
        actions: Mapping[str, ActionRunner] | None = None,
        store: RunStore | None = None,
        clock: Callable[[], float] = time.monotonic,
        secrets: SecretBook | None = None,
    ) -> None:
        self._sink = sink
        self.settings = settings
        self.runtime = runtime
        """Handed to actions as `StepContext.runtime`."""
        self.ports = ports
        self._actions = actions
        self.store = store or RunStore(settings.state_dir / "runs")
        self.secrets = secrets if secrets is not None else SecretBook.from_runs(self.store)
        """Every run's secret values, for the instance watcher (`InstanceWatcher(secrets=runner.secrets)`)."""
        self._clock = clock
        self._runs: dict[str, _Run] = {}
        self._closing = False
        self.log: NodeLogger = node_logger("agent.pipeline", settings.node_id)

    # --- public API ------------------------------------------------------------

    @property
    def active(self) -> list[str]:
        """The ids of the runs in progress."""
        return list(self._runs)

    def start(self, run_id: str, pipeline_yaml: str, params: Mapping[str, Any],
              instance_id: str = "") -> CommandOutcome:
        """Accept a run and start it in the background; ok once its record is written.

        A run id seen before answers ok ("already known") and runs nothing. A
        pipeline or params the agent refuses fail the run at once (event and
        record) and the outcome carries the same message.
        """
        if not RUN_ID.match(run_id):
            return CommandOutcome(False, f"invalid run id {run_id!r}")
        if run_id in self._runs or self.store.exists(run_id):
            return CommandOutcome(True, f"run {run_id} already known")
        record = RunRecord(run_id, pipeline_yaml, _jsonable(dict(params)), instance_id)
        try:
            run = self._prepare(record)
        except PipelineError as exc:
            message = redact(exc.message, _given_secrets(pipeline_yaml, params))
            self._fail_at_once(record, message)
            return CommandOutcome(False, message)
        self.store.save(record)
        self.log.info("run %s (%s) accepted", run_id, run.pipeline.metadata.name)
        self._launch(run, fresh=True)
        return CommandOutcome(True)

    def cancel(self, run_id: str, reason: str = "") -> CommandOutcome:
        """Cancel a run in progress: its running step is cancelled, then its cleanup runs."""
        run = self._runs.get(run_id)
        if run is None:
            return CommandOutcome(False, self._not_running(run_id))
        if run.cancel_reason is not None or run.record.phase != "steps":
            return CommandOutcome(True, f"run {run_id} is already ending")
        run.cancel_reason = redact(reason.strip() or "cancelled by the hub", run.secrets)
        run.logs.add(f"cancel requested: {run.cancel_reason}", "warning")
        self.log.info("run %s: cancel requested (%s)", run_id, run.cancel_reason)
        if run.main is not None:
            run.main.cancel()
        return CommandOutcome(True)

    def resume_unfinished(self) -> list[str]:
        """At agent start: resume every unfinished run on record (or fail it with the reason); the resumed ids."""
        self._prune()
        resumed: list[str] = []
        for run_id in self.store.run_ids():
            if run_id not in self._runs and self._resume(run_id):
                resumed.append(run_id)
        return resumed

    async def close(self) -> None:
        """Stop every run without recording an end: the next agent resumes them."""
        self._closing = True
        tasks = [run.task for run in self._runs.values() if run.task is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def wait(self, run_id: str) -> None:
        """Until run `run_id` is no longer in progress (for tests and shutdown)."""
        run = self._runs.get(run_id)
        if run is not None and run.task is not None:
            await asyncio.wait({run.task})

    # --- accepting and resuming ------------------------------------------------

    def _prepare(self, record: RunRecord) -> _Run:
        """Load the record's pipeline and params; PipelineError when the agent refuses them."""
        if record.instance_id and not RUN_ID.match(record.instance_id):
            raise PipelineError(f"invalid instance id {record.instance_id!r}")
        pipeline = load_pipeline(record.pipeline_yaml, source=f"run {record.run_id}")
        params = pipeline.resolve_params(record.params)
        secrets = sorted({s for s in pipeline.secret_values(params) if s}, key=len, reverse=True)
        self.secrets.add_run(record.run_id, record.instance_id, secrets)
        logs = LineBatcher(f"run:{record.run_id}", self._sink.emit_log, secrets=secrets)
        for step in pipeline.steps:
            record.step(step.name)
        return _Run(record, pipeline, params, secrets, logs)

    def _resume(self, run_id: str) -> bool:
        try:
            record = self.store.load(run_id)
        except (OSError, StateError) as exc:
            self._fail_unreadable(run_id, exc)
            return False
        if record.finished:
            return False
        try:
            run = self._prepare(record)
        except PipelineError as exc:
            self._fail_at_once(record, f"cannot resume after an agent restart: {exc.message}")
            return False
        self.log.info("run %s: %s (%s phase)", run_id, RESUMED, record.phase)
        run.logs.add(RESUMED)
        self._launch(run, fresh=False)
        return True

    def _fail_at_once(self, record: RunRecord, message: str) -> None:
        """A run that cannot run at all: FAILED on record and to the hub."""
        self.log.warning("run %s failed: %s", record.run_id, message)
        record.state, record.phase, record.message, record.finished_at = "failed", "done", message, time.time()
        self.store.save(record)
        self._sink.emit_pipeline_event(_event(record.run_id, "", "failed", message=message))

    def _fail_unreadable(self, run_id: str, exc: BaseException) -> None:
        path = self.store.path(run_id)
        aside = path.with_name(path.name + ".corrupt")
        shutil.move(path, aside)
        message = f"the run's record could not be read after an agent restart ({exc}); kept as {aside.name}"
        self._fail_at_once(RunRecord(run_id, ""), message)

    def _not_running(self, run_id: str) -> str:
        try:
            record = self.store.load(run_id)
        except (OSError, StateError, ValueError):
            return f"unknown run {run_id}"
        if record.finished:
            return f"run {run_id} already finished ({record.state})"
        return f"run {run_id} is not running on this agent"

    def _launch(self, run: _Run, *, fresh: bool) -> None:
        self._runs[run.run_id] = run
        run.task = asyncio.create_task(self._execute(run, fresh), name=f"run {run.run_id}")
        run.task.add_done_callback(lambda task: self._done(run, task))

    def _done(self, run: _Run, task: asyncio.Task[None]) -> None:
        self._runs.pop(run.run_id, None)
        run.logs.flush()
        if not task.cancelled() and task.exception() is not None:
            self.log.error("run %s: the engine failed", run.run_id, exc_info=task.exception())

    # --- the run ---------------------------------------------------------------

    async def _execute(self, run: _Run, fresh: bool) -> None:
        record = run.record
        if record.phase == "steps":
            # No PENDING event per step: the hub lists the steps as pending from the spec it validated.
            self._emit(run, "", "running", message="" if fresh else RESUMED)
            ending, message = await self._steps_phase(run)
            if ending == "succeeded":
                self._finish(run, "succeeded", "")
                return
            self._enter_cleanup(run, ending, message)
        if record.phase == "cleanup":
            await self._cleanup_phase(run)
            self._finish(run, record.ending or "failed", record.message)

    async def _steps_phase(self, run: _Run) -> tuple[str, str]:
        """("succeeded", "") or ("failed" | "cancelled", the run's message)."""
        if run.cancel_reason is None:
            run.main = asyncio.create_task(self._run_steps(run))
            try:
                return await run.main
            except asyncio.CancelledError:
                if self._closing or run.cancel_reason is None:
                    raise  # the agent is stopping: leave the record as it is, to resume
        return "cancelled", run.cancel_reason

    async def _run_steps(self, run: _Run) -> tuple[str, str]:
        for step in run.pipeline.steps:
            state = run.record.step(step.name)
            if state.state in ("succeeded", "skipped"):
                continue
            run.current = step
            failed_before = state.state in ("failed", "cancelled")  # the agent stopped before its cleanup began
            error = state.message if failed_before else await self._run_step(run, step)
            if error is not None:
                return "failed", f"step '{step.name}' failed: {error}"
        run.current = None
        return "succeeded", ""

    def _enter_cleanup(self, run: _Run, ending: str, message: str) -> None:
        record = run.record
        failed = run.current
        cleanup = [*(failed.on_failure if failed is not None else []), *run.pipeline.on_failure]
        record.phase, record.ending, record.message = "cleanup", ending, message
        record.cleanup = [step.name for step in cleanup]
        self.store.save(record)
        run.logs.add(f"run {ending}: {message}" + (f"; cleaning up ({', '.join(record.cleanup)})"
                                                   if cleanup else ""), "error" if ending == "failed" else "warning")

    async def _cleanup_phase(self, run: _Run) -> None:
        record = run.record
        why = record.message if record.ending == "cancelled" else f"not run: {record.message}"
        for step in run.pipeline.steps:
            if record.step(step.name).state in ("pending", "running"):
                self._set_step(run, step, "cancelled", message=why)
        steps = {step.name: step for step in run.pipeline.all_steps()}
        for name in record.cleanup:
            done = record.steps.get(name)
            if name not in steps or (done is not None and done.state in FINISHED):
                continue
            error = await self._run_step(run, steps[name])
            if error is not None:
                run.logs.add(f"cleanup step '{name}' failed: {error}", "warning")

    def _finish(self, run: _Run, ending: str, message: str) -> None:
        record = run.record
        record.state, record.phase, record.message, record.finished_at = (
            ending, "done", message, time.time())  # type: ignore[assignment]  # ending is a run state
        self.store.save(record)
        run.logs.add(f"run {ending}" + (f": {message}" if message else ""),
                     "info" if ending == "succeeded" else "error" if ending == "failed" else "warning")
        run.logs.flush()
        self._emit(run, "", ending, message=message, progress=100 if ending == "succeeded" else 0)
        self.log.info("run %s %s%s", run.run_id, ending, f": {redact(message, run.secrets)}" if message else "")
        self._release_ports(run, ending)
        self._prune()

    def _release_ports(self, run: _Run, ending: str) -> None:
        kind, owner = run.pipeline.metadata.instance, run.record.instance_id or f"run-{run.run_id}"
        if (kind == "stop" and ending == "succeeded") or (kind == "create" and ending != "succeeded"):
            try:
                self.ports.release(owner)
            except Exception as exc:  # never let bookkeeping end the run badly
                self.log.warning("run %s: releasing the ports of %s failed: %s", run.run_id, owner, exc)

    def _prune(self) -> None:
        try:
            removed = self.store.prune(pinned=self.secrets.pinned_runs())
        except OSError as exc:
            self.log.warning("pruning finished runs failed: %s", exc)
            return
        self.secrets.forget_runs(removed)
        if removed:
            self.log.debug("pruned %d finished runs", len(removed))

    # --- one step --------------------------------------------------------------

    async def _run_step(self, run: _Run, step: Step) -> str | None:
        """Run one step to its end (skipped, succeeded or failed); its error, or None."""
        scope = self._scope(run)
        try:
            if not evaluate_when(step.when, scope, f"{step.name}.when"):
                self._set_step(run, step, "skipped", message=f"skipped: when {step.when!r} is false")
                return None
            inputs = step_inputs(step, scope)
        except PipelineError as exc:
            self._set_step(run, step, "failed", message=exc.message)
            return exc.message
        return await self._attempts(run, step, inputs)

    async def _attempts(self, run: _Run, step: Step, inputs: Any) -> str | None:
        attempts = max(1, step.retry.attempts)
        state = run.record.step(step.name)
        first = min(max(1, state.attempt), attempts) if state.state == "running" else 1
        error = ""
        for attempt in range(first, attempts + 1):
            result = await self._attempt(run, step, inputs, attempt)
            if result is None:
                return None
            error = redact(result, run.secrets)
            if attempt < attempts:
                delay = step.retry.delay(attempt)
                run.logs.add(f"step '{step.name}' attempt {attempt} of {attempts} failed: {error}; "
                             f"retrying in {delay:g} s", "warning")
                await asyncio.sleep(delay)
        self._set_step(run, step, "failed", message=error)
        return error

    async def _attempt(self, run: _Run, step: Step, inputs: Any, attempt: int) -> str | None:
        """One try of a step's action; its error, or None when it succeeded (SUCCEEDED already reported)."""
        self._set_step(run, step, "running", attempt=attempt, progress=0.0)
        throttle = run.throttles[step.name] = _Throttle(
            1 / PROGRESS_PER_S, lambda pct, msg: self._progress_event(run, step, pct, msg), self._clock)
        try:
            seconds = step.timeout_in(self._scope(run))
        except PipelineError as exc:
            return exc.message
        timeout = asyncio.timeout(seconds)
        try:
            async with timeout:
                outputs = await self._action(step.action)(self._context(run, step), inputs)
        except TimeoutError as exc:
            return f"timed out after {seconds:g} s" if timeout.expired() else _describe(exc)
        except (StepFailed, PipelineError) as exc:
            return exc.message
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            self.log.exception("run %s: step %s: unexpected error", run.run_id, step.name)
            return _describe(exc)
        finally:
            throttle.close()
        self._set_step(run, step, "succeeded", outputs=_jsonable(outputs or {}), progress=100.0)
        return None

    def _action(self, name: str) -> ActionRunner:
        if self._actions is None:
            from agent.pipeline.actions import ACTION_RUNNERS  # the docker SDK only when a run needs it

            self._actions = ACTION_RUNNERS
        try:
            return self._actions[name]
        except KeyError:
            raise StepFailed(f"this agent has no action {name!r}") from None

    def _context(self, run: _Run, step: Step) -> StepContext:
        data_dir = self._data_dir(run.record)
        data_dir.mkdir(parents=True, exist_ok=True)
        return StepContext(
            run_id=run.run_id, step=step.name, node_id=self.settings.node_id,
            instance_id=run.record.instance_id, data_dir=data_dir, runtime=self.runtime, ports=self.ports,
            allow_shell=self.settings.allow_shell,
            progress=_threadsafe(lambda pct, msg="": self._progress(run, step, pct, msg)),
            log=_threadsafe(lambda text, level="info", stream="": run.logs.add(text, level, stream)),
            secrets=tuple(run.secrets), scope=self._scope(run),
        )

    def _data_dir(self, record: RunRecord) -> Path:
        return self.settings.data_root / (record.instance_id or record.run_id)

    def _scope(self, run: _Run) -> dict[str, Any]:
        record = run.record
        return {
            "params": run.params,
            "steps": {name: {"outputs": state.outputs} for name, state in record.steps.items()},
            "run": {"id": record.run_id},
            "instance": {"id": record.instance_id, "data_dir": str(self._data_dir(record))},
            "node": {"id": self.settings.node_id},
        }

    # --- state changes and events ----------------------------------------------

    def _progress(self, run: _Run, step: Step, percent: float, message: str) -> None:
        throttle = run.throttles.get(step.name)
        state = run.record.step(step.name)
        if throttle is None or state.state != "running":
            return  # a late call from a thread after the step ended
        percent = min(100.0, max(0.0, float(percent)))
        state.progress, state.message = percent, redact(message, run.secrets)
        throttle.update(percent, state.message)

    def _progress_event(self, run: _Run, step: Step, percent: float, message: str) -> None:
        state = run.record.step(step.name)
        self._emit(run, step.name, "running", action=step.action, progress=percent, message=message,
                   attempt=state.attempt)

    def _set_step(self, run: _Run, step: Step, state: StepStateName, *, attempt: int | None = None,
                  message: str = "", outputs: dict[str, Any] | None = None, progress: float | None = None) -> None:
        """Record a step's new state, save the run's record, then emit the event."""
        record = run.record.step(step.name)
        record.state, record.message = state, redact(message, run.secrets)
        if attempt is not None:
            record.attempt = attempt
        if outputs is not None:
            record.outputs = outputs
        if progress is not None:
            record.progress = progress
        self.store.save(run.record)
        if state in FINISHED:
            run.logs.flush()  # the step's lines reach the hub before its end
        self._emit(run, step.name, state, action=step.action, progress=record.progress, message=record.message,
                   attempt=record.attempt, outputs=redact_value(record.outputs, run.secrets) if outputs else None)

    def _emit(self, run: _Run, step: str, state: str, *, action: str = "", progress: float = 0.0,
              message: str = "", attempt: int = 0, outputs: Mapping[str, Any] | None = None) -> None:
        event = _event(run.run_id, step, state, message=redact(message, run.secrets), progress=progress,
                       attempt=attempt, action=action)
        if outputs:
            event.outputs.update(dict(outputs))
        self._sink.emit_pipeline_event(event)


def _event(run_id: str, step: str, state: str, *, message: str = "", progress: float = 0.0, attempt: int = 0,
           action: str = "") -> pb.PipelineEvent:
    event = pb.PipelineEvent(run_id=run_id, step=step, state=_STATES[state], progress=int(progress),
                             message=message, attempt=attempt, action=action)
    event.at.GetCurrentTime()
    return event


def _given_secrets(pipeline_yaml: str, params: Mapping[str, Any]) -> list[str]:
    """For a run refused at once: the given values of the params the pipeline marks secret (when it loads)."""
    try:
        pipeline = load_pipeline(pipeline_yaml)
    except PipelineError:
        return []
    return [str(params[name]) for name, spec in pipeline.params.items() if spec.secret and params.get(name)]


def _jsonable(value: Any) -> Any:
    """`value` as plain JSON data (unknown types as strings)."""
    return json.loads(json.dumps(value, default=str))


def _describe(exc: BaseException) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _threadsafe(function: Callable[..., None]) -> Callable[..., None]:
    """`function` callable from any thread: calls from other threads are handed to the event loop."""
    loop = asyncio.get_running_loop()
    owner = threading.get_ident()

    def call(*args: Any, **kwargs: Any) -> None:
        if threading.get_ident() == owner:
            function(*args, **kwargs)
            return
        try:
            loop.call_soon_threadsafe(lambda: function(*args, **kwargs))
        except RuntimeError:  # the loop is closed: the run is long over
            logging.getLogger(__name__).debug("dropped a late progress or log call")

    return call
