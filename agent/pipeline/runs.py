"""Persisted pipeline runs: one JSON file per run under `STATE_DIR/runs/`.

    STATE_DIR/runs/<run_id>.json     0600, written atomically after every step state change

A record holds what a restarted agent needs to finish the run: the pipeline
YAML, the params (secrets included: the state dir is 0700 and holds the node's
credential already), the instance id, each step's state, attempt and outputs,
the phase (`steps`, then `cleanup` after a failure or a cancel) and the run's
own state. A run id that has a file here is never started again.

Retention: a finished record is removed once it is older than `KEEP_DAYS`
days or more than `KEEP_LAST` finished records are newer (`RunStore.prune`);
unfinished records are always kept, and so are those the caller pins (the
runs whose secrets a live instance may still print, `agent.redaction`).
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Collection
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from agent._files import ensure_private_dir, write_atomic
from agent.errors import StateError

__all__ = [
    "FINISHED",
    "KEEP_DAYS",
    "KEEP_LAST",
    "RUN_ID",
    "Phase",
    "RunRecord",
    "RunStore",
    "StepRecord",
    "StepStateName",
]

KEEP_DAYS = 7.0
KEEP_LAST = 200
RUN_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
"""Run ids name files: letters, digits, `.`, `_`, `-`, at most 128 characters."""

StepStateName = Literal["pending", "running", "succeeded", "failed", "skipped", "cancelled"]
"""A step's (or the run's) state: `pb.StepState` without the prefix, lower case."""
Phase = Literal["steps", "cleanup", "done"]
FINISHED: frozenset[str] = frozenset({"succeeded", "failed", "skipped", "cancelled"})
_VERSION = 1


@dataclass
class StepRecord:
    """One step (main or cleanup) of a run."""

    state: StepStateName = "pending"
    attempt: int = 0
    """1 for the first try; 0 before it ran."""
    outputs: dict[str, Any] = field(default_factory=dict)
    message: str = ""
    progress: float = 0.0

    @classmethod
    def from_json(cls, data: Any) -> StepRecord:
        if not isinstance(data, dict):
            raise ValueError("a step must be a JSON object")
        state = str(data.get("state", "pending"))
        if state not in FINISHED | {"pending", "running"}:
            raise ValueError(f"unknown step state {state!r}")
        outputs = data.get("outputs", {})
        if not isinstance(outputs, dict):
            raise ValueError("step outputs must be a JSON object")
        return cls(state=state,  # type: ignore[arg-type]  # checked above
                   attempt=int(data.get("attempt", 0)), outputs=outputs,
                   message=str(data.get("message", "")), progress=float(data.get("progress", 0.0)))


@dataclass
class RunRecord:
    """Everything the agent knows about one run."""

    run_id: str
    pipeline_yaml: str
    params: dict[str, Any] = field(default_factory=dict)
    instance_id: str = ""
    state: StepStateName = "running"
    """The run's own state: running until it ends as succeeded, failed or cancelled."""
    phase: Phase = "steps"
    message: str = ""
    """The run's error (a failed or cancelled run) once known."""
    ending: str = ""
    """In the cleanup phase: how the run ends once cleanup is done ("failed" or "cancelled")."""
    steps: dict[str, StepRecord] = field(default_factory=dict)
    """Main steps and the cleanup steps that ran, by name."""
    cleanup: list[str] = field(default_factory=list)
    """In the cleanup phase: the cleanup steps to run, in order."""
    created_at: float = field(default_factory=time.time)
    finished_at: float = 0.0

    @property
    def finished(self) -> bool:
        return self.state in FINISHED

    def step(self, name: str) -> StepRecord:
        """The record of step `name` (created pending when new)."""
        return self.steps.setdefault(name, StepRecord())

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["version"] = _VERSION
        return data

    @classmethod
    def from_json(cls, data: Any) -> RunRecord:
        if not isinstance(data, dict):
            raise ValueError("expected a JSON object")
        state, phase = str(data.get("state", "")), str(data.get("phase", ""))
        if state not in FINISHED | {"pending", "running"} or phase not in ("steps", "cleanup", "done"):
            raise ValueError(f"unknown run state {state!r} or phase {phase!r}")
        params, steps = data.get("params", {}), data.get("steps", {})
        if not isinstance(params, dict) or not isinstance(steps, dict):
            raise ValueError("params and steps must be JSON objects")
        return cls(
            run_id=str(data["run_id"]), pipeline_yaml=str(data["pipeline_yaml"]), params=params,
            instance_id=str(data.get("instance_id", "")),
            state=state, phase=phase,  # type: ignore[arg-type]  # checked above
            message=str(data.get("message", "")), ending=str(data.get("ending", "")),
            steps={str(k): StepRecord.from_json(v) for k, v in steps.items()},
            cleanup=[str(name) for name in data.get("cleanup", [])],
            created_at=float(data.get("created_at", 0.0)), finished_at=float(data.get("finished_at", 0.0)),
        )


class RunStore:
    """The run records in `directory` (created 0700)."""

    def __init__(self, directory: Path) -> None:
        self.directory = ensure_private_dir(directory)

    def path(self, run_id: str) -> Path:
        if not RUN_ID.match(run_id):
            raise ValueError(f"invalid run id {run_id!r}")
        return self.directory / f"{run_id}.json"

    def exists(self, run_id: str) -> bool:
        return self.path(run_id).exists()

    def save(self, record: RunRecord) -> None:
        """Write `record` atomically (readers see the old or the new file)."""
        write_atomic(self.path(record.run_id), json.dumps(record.to_json(), separators=(",", ":")).encode())

    def load(self, run_id: str) -> RunRecord:
        """The record of `run_id`; StateError when it cannot be read back (FileNotFoundError when missing)."""
        path = self.path(run_id)
        raw = path.read_bytes()
        try:
            record = RunRecord.from_json(json.loads(raw))
        except (ValueError, KeyError, TypeError) as exc:
            raise StateError(f"{path} is unreadable: {exc}") from exc
        if record.run_id != run_id:
            raise StateError(f"{path} holds run {record.run_id!r}")
        return record

    def run_ids(self) -> list[str]:
        """Every run id with a record here, oldest file first."""
        paths = [p for p in self.directory.glob("*.json") if RUN_ID.match(p.stem)]
        return [p.stem for p in sorted(paths, key=_mtime)]

    def prune(self, now: float | None = None, keep_days: float = KEEP_DAYS, keep_last: int = KEEP_LAST,
              pinned: Collection[str] = ()) -> list[str]:
        """Remove finished records older than `keep_days` or beyond the `keep_last` newest, except the
        `pinned` run ids; the ids removed."""
        now = time.time() if now is None else now
        finished: list[tuple[float, str]] = []
        for run_id in self.run_ids():
            try:
                record = self.load(run_id)
            except (OSError, StateError):
                continue  # unreadable records are the resume's business, not retention's
            if record.finished:
                finished.append((record.finished_at or record.created_at, run_id))
        finished.sort(reverse=True)
        cutoff = now - keep_days * 86400
        doomed = [run_id for i, (at, run_id) in enumerate(finished)
                  if (i >= keep_last or at < cutoff) and run_id not in pinned]
        for run_id in doomed:
            self.path(run_id).unlink(missing_ok=True)
        return doomed


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except OSError:
        return 0.0
