"""How an instance follows the run that drives it.

    run (create)                        instance
    running                        ──►  preparing
    a container.run step running   ──►  starting
    succeeded                      ──►  running (container id and ports from the container.run step's outputs)
    failed / cancelled             ──►  failed with the run's error (resources released)

    run (use)                           instance
    succeeded                      ──►  running, with the new container id and ports if a container.run step ran
    failed / cancelled             ──►  left as it was (the run holds the error)

    run (stop)                          instance
    succeeded                      ──►  stopping → stopped (resources released)
    failed / cancelled             ──►  left as it was (the run holds the error)

An instance only moves forward: a step that would take it back, or out of a
final state, is skipped (a container report may have moved it already).
"""

from __future__ import annotations

import logging
from typing import Any

from pydantic import ValidationError

from console.errors import GamenodeError
from console.models import Instance, InstanceState, PipelineRun, PortMapping, RunInstanceMode, RunState, StepState
from console.service.instances import TRANSITIONS, InstanceService
from console.service.run_events import failed_step_error

__all__ = ["CONTAINER_RUN", "InstanceFollower"]

log = logging.getLogger(__name__)

CONTAINER_RUN = "container.run"
S = InstanceState
_UP = (S.PENDING, S.PREPARING, S.STARTING, S.RUNNING)


class InstanceFollower:
    """Moves the instance of a `create`, `use` or `stop` run as the run goes."""

    def __init__(self, instances: InstanceService) -> None:
        self.instances = instances

    def run_changed(self, old: PipelineRun, new: PipelineRun) -> None:
        """Follow what changed between two versions of a run (the caller holds the services' lock)."""
        if new.instance_id is None or new.instance_mode == RunInstanceMode.NONE:
            return
        try:
            self._follow(old, new, new.instance_id)
        except GamenodeError as exc:  # the instance went away, or was moved by someone else
            log.warning("run %s: instance %s did not follow the run: %s", new.id, new.instance_id, exc)

    def _follow(self, old: PipelineRun, new: PipelineRun, instance_id: str) -> None:
        mode = new.instance_mode
        if new.state.finished and not old.state.finished:
            self._finished(new, instance_id)
        elif mode == RunInstanceMode.CREATE:
            if new.state in (RunState.RUNNING, RunState.CANCELLING) and old.started_at is None:
                self._advance(instance_id, S.PREPARING)
            if _container_started(old, new):
                self._advance(instance_id, S.STARTING)

    def _finished(self, run: PipelineRun, instance_id: str) -> None:
        mode = run.instance_mode
        if run.state == RunState.SUCCEEDED:
            if mode == RunInstanceMode.STOP:
                self._stop(instance_id)
            else:
                self._container(run, instance_id)
                self._advance(instance_id, S.RUNNING)
        elif mode == RunInstanceMode.CREATE:
            instance = self.instances.instances.find(instance_id)
            if instance is not None and instance.state.live:
                error = run.error or failed_step_error(run) or run.state.value
                if run.state == RunState.CANCELLED:
                    error = f"its start was cancelled: {error}"
                self.instances.transition(instance_id, S.FAILED, error)

    def _advance(self, instance_id: str, target: InstanceState) -> None:
        """Walk pending → preparing → starting → running up to `target`, from wherever the instance is."""
        instance = self.instances.instances.find(instance_id)
        if instance is None or instance.state not in _UP:
            return
        for state in _UP[_UP.index(instance.state) + 1 : _UP.index(target) + 1]:
            instance = self.instances.transition(instance_id, state)

    def _stop(self, instance_id: str) -> None:
        instance = self.instances.instances.find(instance_id)
        if instance is None or not instance.state.live:
            return
        if instance.state != S.STOPPING and S.STOPPING in TRANSITIONS[instance.state]:
            instance = self.instances.transition(instance_id, S.STOPPING)
        self.instances.transition(instance_id, S.STOPPED)

    def _container(self, run: PipelineRun, instance_id: str) -> None:
        """The container id and ports of the run's last container.run step, onto the instance."""
        outputs = next((s.outputs for s in reversed(run.steps)
                        if s.action == CONTAINER_RUN and s.state == StepState.SUCCEEDED and not s.cleanup), None)
        instance = self.instances.instances.find(instance_id)
        if not outputs or instance is None or not instance.state.live:
            return
        changes: dict[str, Any] = {}
        if isinstance(outputs.get("container_id"), str) and outputs["container_id"]:
            changes["container_id"] = outputs["container_id"]
        ports = _ports(outputs.get("ports"), run.id)
        if ports is not None:
            changes["ports"] = ports
        if changes and _differs(instance, changes):
            self.instances.update_instance(instance_id, changes)


def _container_started(old: PipelineRun, new: PipelineRun) -> bool:
    """Whether a container.run step went running (or straight to succeeded) between `old` and `new`."""
    for step in new.steps:
        if step.action != CONTAINER_RUN or step.cleanup or step.state == StepState.PENDING:
            continue
        before = old.step(step.name)
        if before is None or before.state == StepState.PENDING:
            return step.state in (StepState.RUNNING, StepState.SUCCEEDED)
    return False


def _ports(value: Any, run_id: str) -> list[dict[str, Any]] | None:
    if not isinstance(value, list):
        return None
    fields = set(PortMapping.model_fields)
    try:
        return [PortMapping.model_validate({k: v for k, v in p.items() if k in fields}).model_dump()
                for p in value if isinstance(p, dict)]
    except ValidationError as exc:
        log.warning("run %s: container.run reported ports the hub cannot read: %s", run_id, exc)
        return None


def _differs(instance: Instance, changes: dict[str, Any]) -> bool:
    current = instance.model_dump(include=set(changes))
    return current != changes
