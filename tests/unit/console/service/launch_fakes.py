"""A fake run service for launch tests: records every start and cancel; runs stay as started."""

from __future__ import annotations

import itertools
import threading
from dataclasses import dataclass, field
from typing import Any

from console.errors import GamenodeError, NotFound
from console.models import PipelineRun, Resources, RunState
from console.service import Services


@dataclass
class StartCall:
    node_id: str
    pipeline: str | None
    pipeline_yaml: str | None
    params: dict[str, Any]
    instance_id: str | None
    resources: Resources | None
    created_by: str


@dataclass
class FakeRuns:
    """`RunService.start` as launch uses it; `fail` makes the next starts raise."""

    services: Services
    calls: list[StartCall] = field(default_factory=list)
    cancels: list[tuple[str, str, str]] = field(default_factory=list)
    """(run id, reason, actor) of every cancel."""
    runs: dict[str, PipelineRun] = field(default_factory=dict)
    fail: GamenodeError | None = None
    secret: frozenset[str] = frozenset({"registry_password"})
    _ids: itertools.count[int] = field(default_factory=itertools.count)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def start(
        self, node_id: str, *, pipeline: str | None, pipeline_yaml: str | None, params: dict[str, Any],
        instance_id: str | None = None, resources: Resources | None = None, created_by: str = "",
    ) -> PipelineRun:
        with self._lock:
            self.calls.append(StartCall(node_id, pipeline, pipeline_yaml, dict(params), instance_id, resources,
                                        created_by))
            n = next(self._ids)
        if self.fail is not None:
            raise self.fail
        shown = {k: "***" if k in self.secret else v for k, v in params.items()}
        run = PipelineRun(id=f"run-{n}", node_id=node_id, pipeline=pipeline or "inline",
                          pipeline_yaml=pipeline_yaml or "", params=shown, instance_id=instance_id)
        self.runs[run.id] = run
        return run

    def get_run(self, run_id: str) -> PipelineRun:
        if run_id not in self.runs:
            raise NotFound("run", run_id)
        return self.runs[run_id]

    def cancel(self, run_id: str, reason: str = "", actor: str = "api") -> PipelineRun:
        self.cancels.append((run_id, reason, actor))
        run = self.runs[run_id] = self.get_run(run_id).model_copy(update={"state": RunState.CANCELLING})
        return run

    def finish(self, run_id: str, state: RunState = RunState.SUCCEEDED) -> None:
        self.runs[run_id] = self.runs[run_id].model_copy(update={"state": state})
