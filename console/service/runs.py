"""RunService: pipeline runs on nodes — start, follow, cancel; the only writer of runs.

    start_request(req)    validate the pipeline and its params (422 with field paths and YAML lines),
                          check the node (404; offline or in maintenance: 409), create the instance of
                          a `create` pipeline (its resources reserved) or check the one a `stop`/`use`
                          pipeline names, store the run (pending) and dispatch RunPipeline
    command_acked(...)    the agent took the run (dispatched) or refused it (failed)
    apply_event(...)      an agent's PipelineEvent: step and run transitions are written, progress-only
                          changes are kept in memory and laid over what is read
    cancel(run_id)        CancelRun to the agent; the run is cancelling until the agent says how it ended
    resume()              at hub start: runs never acked are dispatched again, cancels never finished
                          are sent again (the agent runs each run id and command id at most once)

Secrets: a run's stored and answered `params` read `***` for every secret
param (`secret: true`) with a value. The real values go out only in the
RunPipeline command; so that a hub restart can still dispatch a run its agent
never acked, they are kept in `run-secrets/<run_id>.yaml` (0600 in a 0700
directory, no index) from the start until the agent acks the command (or the
run ends), then deleted. While a run is in progress its secret values are
also scrubbed from the messages, outputs and errors the agent reports, and
`secrets_on(node)` hands them to the log service, which scrubs the node's log
lines with them (the agent redacts them first; this covers an older agent).

Instances follow their run (`console.service.run_instances`). Listeners
(`subscribe`) hear of every change of a run, progress included, right after
it, on the thread that made it and under the services' lock: they must be
quick and must not call back into the service.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Callable
from datetime import datetime
from typing import Any, Protocol

from pydantic import Field

from agent.errors import PipelineError
from agent.logbatch import REDACTED, redact, redact_value
from agent.pipeline.spec import Pipeline, load_pipeline
from console.errors import Conflict, InvalidInput, Unavailable
from console.models import (
    Instance,
    InstanceState,
    Model,
    NodeStatus,
    PipelineRun,
    Resources,
    RunInstanceMode,
    RunSecrets,
    RunState,
    StepRecord,
    StepState,
    utcnow,
)
from console.service.catalog import PipelineCatalog, pipeline_invalid
from console.service.instances import InstanceService, InstanceSpec
from console.service.nodes import NodeService
from console.service.query import Page, paginate, sort_records
from console.service.run_events import RUN_TRANSITIONS, RunEvent, apply_event, finish
from console.service.run_instances import InstanceFollower
from console.store import RunSecretStore, RunStore
from console.validation import validate

__all__ = ["INLINE", "REDACTED", "Dispatcher", "RunEvent", "RunQuery", "RunRequest", "RunService"]

log = logging.getLogger(__name__)

INLINE = "inline"
"""The `pipeline` of a run whose YAML came with the request."""
SORT_FIELDS = frozenset({"id", "node_id", "pipeline", "instance_id", "state", "created_at", "updated_at"})

Listener = Callable[[PipelineRun], None]


class RunRequest(Model):
    """What a caller gives to start a run."""

    node_id: str
    pipeline: str | None = None
    """A pipeline of the catalog by name; or give `yaml`."""
    yaml: str | None = None
    """Inline pipeline YAML."""
    params: dict[str, Any] = Field(default_factory=dict)
    instance_id: str | None = None
    """stop/use pipelines: the instance they act on. create: the new instance's id (generated when not
    given), or an existing pending instance on the node that has no run yet."""
    resources: Resources | None = None
    """create: what the instance reserves; defaults to the game version's requirements."""
    game: str | None = None
    """create: the game card (and below its version and platform) recorded on the instance."""
    game_version: str | None = None
    platform: str | None = None
    reason: str = ""


class RunQuery(Model):
    node_id: str | None = None
    instance_id: str | None = None
    state: RunState | None = None
    pipeline: str | None = None
    sort: str = "-created_at"
    limit: int | None = Field(default=None, ge=0)
    offset: int = Field(default=0, ge=0)


class Dispatcher(Protocol):
    """Reaches agents (the hub's session registry); every method may be called from any thread."""

    def connected(self, node_id: str) -> bool:
        """Whether the node's agent is connected now."""

    def run_pipeline(self, run: PipelineRun, params: dict[str, Any]) -> None:
        """Send RunPipeline (real `params`); the ack comes back through `RunService.command_acked`."""

    def cancel_run(self, run: PipelineRun, reason: str) -> None:
        """Send CancelRun; the ack comes back through `RunService.cancel_acked`."""


class RunService:
    def __init__(
        self,
        runs: RunStore,
        secret_store: RunSecretStore,
        nodes: NodeService,
        instances: InstanceService,
        catalog: PipelineCatalog | None = None,
        dispatcher: Dispatcher | None = None,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.runs = runs
        self.secret_store = secret_store
        self.nodes = nodes
        self.instances = instances
        self.catalog = catalog or PipelineCatalog()
        self.dispatcher = dispatcher
        """Set by the hub; without one, starting or cancelling a run is `Unavailable`."""
        self.clock = clock
        self._lock = instances.lock
        """The services' shared lock: instances and runs change together."""
        self._follower = InstanceFollower(instances)
        self._progress: dict[str, dict[str, tuple[int, str]]] = {}
        """run id → step → (progress, message) reported since the step's last written change."""
        self._secrets: dict[str, list[str]] = {}
        """run id → secret values to scrub from what its agent reports, while the run is in progress."""
        self._listeners: dict[str | None, tuple[Listener, ...]] = {}

    # --- queries --------------------------------------------------------------

    def get_run(self, run_id: str) -> PipelineRun:
        """The run, with the progress its steps reported since their last written change."""
        with self._lock:
            return self._overlay(self.runs.get(run_id))

    def list_runs(self, query: RunQuery | dict[str, Any] | None = None) -> Page[PipelineRun]:
        q = query if isinstance(query, RunQuery) else validate(RunQuery, query or {}, "query")
        keys = sort_records(q.sort, SORT_FIELDS)

        def wanted(r: PipelineRun) -> bool:
            return (
                (q.node_id is None or r.node_id == q.node_id)
                and (q.instance_id is None or r.instance_id == q.instance_id)
                and (q.state is None or r.state == q.state)
                and (q.pipeline is None or r.pipeline == q.pipeline)
            )

        page = paginate(keys([r for r in self.runs.list() if wanted(r)]), q.limit, q.offset)
        with self._lock:
            return Page([self._overlay(r) for r in page.items], page.total)

    # --- starting ---------------------------------------------------------------

    def busy_instances(self, node_id: str) -> set[str]:
        """Instances on `node_id` with a run still going: their containers are being changed on purpose."""
        ended = (RunState.SUCCEEDED, RunState.FAILED, RunState.CANCELLED)
        return {r.instance_id for r in self.runs.list()
                if r.node_id == node_id and r.instance_id and r.state not in ended}

    def start(
        self, node_id: str, *, pipeline: str | None = None, pipeline_yaml: str | None = None,
        params: dict[str, Any] | None = None, instance_id: str | None = None, resources: Resources | None = None,
        created_by: str = "api", reason: str = "",
    ) -> PipelineRun:
        """`start_request` with keyword arguments (what `LaunchService` calls)."""
        return self.start_request(RunRequest(
            node_id=node_id, pipeline=pipeline, yaml=pipeline_yaml, params=params or {}, instance_id=instance_id,
            resources=resources, reason=reason,
        ), created_by)

    def start_request(self, request: RunRequest | dict[str, Any], actor: str = "api") -> PipelineRun:
        """Validate, create or check the instance, store the run (pending) and dispatch it."""
        req = request if isinstance(request, RunRequest) else validate(RunRequest, request, "run")
        self.nodes.get_node(req.node_id)  # an unknown node is 404 before anything else is checked
        name, text, pipeline = self._pipeline(req)
        mode = RunInstanceMode(pipeline.metadata.instance)
        instance_id = req.instance_id or (f"inst-{secrets.token_hex(6)}" if mode == RunInstanceMode.CREATE else None)
        params = _resolve(pipeline, self._instance_params(pipeline, mode, req), instance_id)
        secret = {n: params[n] for n, spec in pipeline.params.items() if spec.secret and _has_value(params.get(n))}
        with self._lock:
            self._check_node(req.node_id)
            self._check_instance(req, mode)
            now = self.clock()
            run = validate(PipelineRun, {
                "id": f"run-{secrets.token_hex(6)}", "node_id": req.node_id, "pipeline": name,
                "pipeline_yaml": text, "params": {**params, **dict.fromkeys(secret, REDACTED)},
                "instance_id": instance_id, "instance_mode": mode,
                "steps": [StepRecord(name=s.name, action=s.action) for s in pipeline.steps],
                "created_at": now, "updated_at": now, "created_by": actor, "reason": req.reason,
            }, "run")
            self._store(req, run, secret, pipeline.secret_values(params))
        self._dispatcher().run_pipeline(run, params)
        log.info("run %s of %s started on node %s by %s", run.id, name, run.node_id, actor)
        return run

    def _instance_params(self, pipeline: Pipeline, mode: RunInstanceMode, req: RunRequest) -> dict[str, Any]:
        """`req.params`, plus the instance's current container for a stop (`container`) or use (`old_container`)
        pipeline that declares that param and was not given it: after an upgrade the container is no longer
        `gn-<instance id>`."""
        name = {RunInstanceMode.STOP: "container", RunInstanceMode.USE: "old_container"}.get(mode)
        if name is None or name not in pipeline.params or req.params.get(name) or req.instance_id is None:
            return req.params
        instance = self.instances.instances.find(req.instance_id)
        if instance is None or not instance.container_id:
            return req.params
        return {**req.params, name: instance.container_id}

    def _store(self, req: RunRequest, run: PipelineRun, secret: dict[str, Any], secret_values: list[str]) -> None:
        """The new run's instance (create), the run, and its secrets until the agent has them."""
        if run.instance_mode == RunInstanceMode.CREATE:
            self._create_instance(req, run)
        self.runs.add(run)
        if secret:
            self.secret_store.put(RunSecrets(id=run.id, params=secret))
            self._secrets[run.id] = secret_values
        self._notify(run)

    def _pipeline(self, req: RunRequest) -> tuple[str, str, Pipeline]:
        if (req.pipeline is None) == (req.yaml is None):
            raise InvalidInput("invalid run: give either `pipeline` (a name) or `yaml` (inline), not both or neither")
        if req.pipeline is not None:
            entry = self.catalog.get(req.pipeline)
            return entry.name, entry.text, entry.require()
        text = req.yaml or ""
        try:
            return INLINE, text, load_pipeline(text, "<inline>")
        except PipelineError as exc:
            raise pipeline_invalid(exc) from None

    def _check_node(self, node_id: str) -> None:
        node = self.nodes.get_node(node_id)
        if node.status == NodeStatus.MAINTENANCE:
            history = self.nodes.status_history(node_id)
            why = history[-1].reason if history and history[-1].to_status == NodeStatus.MAINTENANCE else ""
            raise Conflict(f"node {node_id!r} is in maintenance and takes no new pipelines"
                           + (f" ({why})" if why else ""))
        if not self._dispatcher().connected(node_id):
            raise Conflict(f"node {node_id!r} is offline: its agent is not connected")

    def _check_instance(self, req: RunRequest, mode: RunInstanceMode) -> None:
        """stop/use: the instance must exist on the node (none: if one is named, likewise)."""
        if mode == RunInstanceMode.CREATE:
            return
        if req.instance_id is None:
            if mode != RunInstanceMode.NONE:
                raise InvalidInput(f"instance_id: required by a pipeline that works on an instance ({mode.value})")
            return
        instance = self.instances.get_instance(req.instance_id)
        if instance.node_id != req.node_id:
            raise Conflict(f"instance {instance.id!r} is on node {instance.node_id!r}, not {req.node_id!r}")

    def _create_instance(self, req: RunRequest, run: PipelineRun) -> Instance:
        assert run.instance_id is not None
        existing = self.instances.instances.find(run.instance_id)
        if existing is not None:
            return self._adopt(existing, run)
        return self.instances.create_instance(InstanceSpec(
            id=run.instance_id, node_id=run.node_id, game=req.game, game_version=req.game_version,
            platform=req.platform, run_id=run.id, resources=req.resources, params=run.params,
        ))

    def _adopt(self, instance: Instance, run: PipelineRun) -> Instance:
        """A pending instance without a run (reserved by a caller holding the lock) becomes this run's."""
        if instance.node_id != run.node_id or instance.state != InstanceState.PENDING or instance.run_id:
            raise Conflict(f"instance {instance.id!r} exists already ({instance.state.value} on node "
                           f"{instance.node_id!r}); a create pipeline needs a new id or its own pending instance")
        return self.instances.update_instance(instance.id, {"run_id": run.id})

    # --- what the agent answers -------------------------------------------------

    def command_acked(self, run_id: str, ok: bool, error: str = "") -> PipelineRun | None:
        """The agent acked RunPipeline: the run is dispatched, or failed when the agent refused it."""
        with self._lock:
            run = self.runs.find(run_id)
            if run_id in self.secret_store:  # the agent has the run now (or refused it)
                self.secret_store.delete(run_id)
            if run is None:
                return None
            if ok:
                return self._write(run, run.model_copy(update={"state": RunState.DISPATCHED})) \
                    if run.state == RunState.PENDING else run
            if run.state in (RunState.PENDING, RunState.DISPATCHED, RunState.CANCELLING) and run.started_at is None:
                error = redact(error, self._secrets.get(run_id, ()))
                return self._end(run, RunState.FAILED, f"the agent refused the run: {error or 'no reason given'}")
            return run

    def cancel_acked(self, run_id: str, ok: bool, error: str = "") -> PipelineRun | None:
        """The agent acked CancelRun; a run it never started and cannot cancel is cancelled here."""
        with self._lock:
            run = self.runs.find(run_id)
            if run is None or ok or run.state != RunState.CANCELLING:
                return run
            log.info("run %s: the agent could not cancel it: %s", run_id, error)
            if run.started_at is None:
                return self._end(run, RunState.CANCELLED, run.cancel_reason or "cancelled")
            return run

    def fail(self, run_id: str, error: str) -> PipelineRun | None:
        """End a run that can no longer finish on its agent (e.g. its node was deleted)."""
        with self._lock:
            run = self.runs.find(run_id)
            if run is None or run.state.finished:
                return run
            return self._end(run, RunState.FAILED, error)

    def apply_event(self, node_id: str, event: RunEvent) -> PipelineRun | None:
        """One PipelineEvent of `node_id`'s agent; the run as it is now (None: not a run of that node)."""
        with self._lock:
            run = self.runs.find(event.run_id)
            if run is None or run.node_id != node_id:
                log.debug("node %s reports run %r, unknown on that node", node_id, event.run_id)
                return None
            event = self._scrubbed(event)
            change = apply_event(run, event, self.clock())
            if change.run is not None:
                run = self._write(run, change.run)
            if change.progress is not None:
                step, progress, message = change.progress
                self._progress.setdefault(run.id, {})[step] = (progress, message)
                self._notify(run)
            return self._overlay(run)

    # --- cancelling -------------------------------------------------------------

    def cancel(self, run_id: str, reason: str = "", actor: str = "api") -> PipelineRun:
        """Ask the agent to stop the run (its cleanup steps run); cancelling twice is one cancel."""
        with self._lock:
            run = self.runs.get(run_id)
            if run.state == RunState.CANCELLING:
                return self._overlay(run)
            if run.state.finished:
                raise Conflict(f"run {run_id!r} is {run.state.value}; only a run in progress can be cancelled")
            why = reason or f"cancelled by {actor}"
            run = self._write(run, run.model_copy(update={
                "state": RunState.CANCELLING, "cancel_reason": why[:1024], "updated_at": self.clock(),
            }))
        self._dispatcher().cancel_run(run, why)
        log.info("run %s: cancel requested by %s (%s)", run_id, actor, why)
        return self.get_run(run_id)

    # --- hub start ----------------------------------------------------------------

    def resume(self) -> int:
        """Dispatch again what no agent acked before the hub stopped; how many commands were sent."""
        sent = 0
        for run in self.runs.filter(lambda r: r.state in (RunState.PENDING, RunState.CANCELLING)):
            if run.state == RunState.CANCELLING:
                self._dispatcher().cancel_run(run, run.cancel_reason)
                sent += 1
                continue
            params = self._real_params(run)
            if params is None:
                self.fail(run.id, "the hub restarted before the agent took the run, and its secret params "
                                  "were not kept: start it again")
                continue
            self._dispatcher().run_pipeline(run, params)
            sent += 1
        return sent

    def _real_params(self, run: PipelineRun) -> dict[str, Any] | None:
        """The params to dispatch `run` with, secrets included; None when a secret's value was lost."""
        kept = self.secret_store.find(run.id)
        params = {**run.params, **(kept.params if kept else {})}
        try:
            pipeline = load_pipeline(run.pipeline_yaml, run.pipeline)
        except PipelineError:
            return params  # valid when stored: the agent refuses it, with the reason, if it no longer is
        if any(spec.secret and params.get(name) == REDACTED for name, spec in pipeline.params.items()):
            return None
        self._secrets[run.id] = pipeline.secret_values(params)
        return params

    # --- listening ------------------------------------------------------------------

    def subscribe(self, listener: Listener, run_id: str | None = None, current: bool = False) -> Callable[[], None]:
        """Call `listener(run)` after every change of run `run_id` (None: of every run); the unsubscribe.

        `current`: first call it with the run as it is now (NotFound for an unknown run), in the same
        step, so the listener sees every state from there on, in order.
        """
        with self._lock:
            if current and run_id is not None:
                listener(self.get_run(run_id))
            self._listeners[run_id] = (*self._listeners.get(run_id, ()), listener)

        def unsubscribe() -> None:
            with self._lock:
                left = tuple(fn for fn in self._listeners.get(run_id, ()) if fn is not listener)
                if left:
                    self._listeners[run_id] = left
                else:
                    self._listeners.pop(run_id, None)

        return unsubscribe

    # --- internals ------------------------------------------------------------------

    def _dispatcher(self) -> Dispatcher:
        if self.dispatcher is None:
            raise Unavailable("pipelines need a hub with agent streams")
        return self.dispatcher

    def _write(self, old: PipelineRun, new: PipelineRun) -> PipelineRun:
        """Store `new`, let its instance follow, drop stale progress, tell the listeners."""
        new = validate(PipelineRun, new.model_dump(), "run")
        self.runs.update(new)
        self._follower.run_changed(old, new)
        progress = self._progress.get(new.id)
        if progress is not None:
            for step in new.steps:
                before = old.step(step.name)
                if before is None or before != step:
                    progress.pop(step.name, None)
        if new.state.finished:
            self._progress.pop(new.id, None)
            self._secrets.pop(new.id, None)
            if new.id in self.secret_store:
                self.secret_store.delete(new.id)
        self._notify(new)
        return new

    def _end(self, run: PipelineRun, state: RunState, error: str) -> PipelineRun:
        if state not in RUN_TRANSITIONS[run.state]:
            return run
        return self._write(run, finish(run, state, error, self.clock()))

    def _overlay(self, run: PipelineRun) -> PipelineRun:
        progress = self._progress.get(run.id)
        if not progress:
            return run
        steps = [s.model_copy(update={"progress": progress[s.name][0], "message": progress[s.name][1]})
                 if s.name in progress and s.state == StepState.RUNNING else s for s in run.steps]
        return run.model_copy(update={"steps": steps})

    def _notify(self, run: PipelineRun) -> None:
        listeners = (*self._listeners.get(run.id, ()), *self._listeners.get(None, ()))
        if not listeners:
            return
        shown = self._overlay(run)
        for listener in listeners:
            try:
                listener(shown)
            except Exception:  # a listener's bug must not undo a change already written
                log.exception("run listener failed for %s", run.id)

    def secrets_on(self, node_id: str) -> list[str]:
        """The secret values of `node_id`'s runs in progress (longest first), to scrub from its log lines.

        Any thread; cheap when no run with secrets is in progress (the usual case).
        """
        if not self._secrets:
            return []
        found = {value for run_id, values in list(self._secrets.items())  # a copy: no lock on the agent path
                 if (run := self.runs.find(run_id)) is not None and run.node_id == node_id for value in values}
        return sorted(found, key=len, reverse=True)

    def _scrubbed(self, event: RunEvent) -> RunEvent:
        values = self._secrets.get(event.run_id)
        if not values or not (event.message or event.outputs):
            return event
        return RunEvent(**{**event.__dict__, "message": redact(event.message, values),
                           "outputs": redact_value(event.outputs, values)})


def _resolve(pipeline: Pipeline, given: dict[str, Any], instance_id: str | None) -> dict[str, Any]:
    given = dict(given)
    if instance_id is not None and "instance_id" in pipeline.params:
        given.setdefault("instance_id", instance_id)
    try:
        return pipeline.resolve_params(given)
    except PipelineError as exc:
        raise pipeline_invalid(exc, "params") from None


def _has_value(value: Any) -> bool:
    return value not in (None, "", [], {})
