"""`agent.pipeline.runs.RunStore`: atomic records, round trips, unreadable files and retention."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from agent.errors import StateError
from agent.pipeline.runs import KEEP_LAST, RunRecord, RunStore, StepRecord

DAY = 86400.0


def _finished(run_id: str, at: float) -> RunRecord:
    return RunRecord(run_id, "yaml", state="succeeded", phase="done", finished_at=at, created_at=at)


def test_a_record_round_trips(tmp_path: Path) -> None:
    store = RunStore(tmp_path / "runs")
    record = RunRecord("r1", "steps: []", {"image": "x", "port": 8080}, "inst-1", phase="cleanup",
                       ending="failed", message="step 'pull' failed: nope", cleanup=["cleanup"])
    record.steps["pull"] = StepRecord("failed", 2, {"digest": "sha256:1"}, "nope", 40.0)
    store.save(record)
    assert store.load("r1") == record
    assert store.exists("r1") and not store.exists("r2")
    assert (tmp_path / "runs").stat().st_mode & 0o777 == 0o700
    assert store.path("r1").stat().st_mode & 0o777 == 0o600
    assert store.run_ids() == ["r1"]


def test_unreadable_records_are_state_errors(tmp_path: Path) -> None:
    store = RunStore(tmp_path)
    store.path("bad").write_text("{nope")
    store.path("odd").write_text(json.dumps({"run_id": "odd", "pipeline_yaml": "", "state": "exploded",
                                             "phase": "steps"}))
    store.save(RunRecord("other", ""))
    store.path("other").rename(store.path("moved"))
    for run_id in ("bad", "odd", "moved"):
        with pytest.raises(StateError):
            store.load(run_id)
    with pytest.raises(FileNotFoundError):
        store.load("missing")


def test_run_ids_name_files_safely(tmp_path: Path) -> None:
    store = RunStore(tmp_path)
    for bad in ("", "../x", "a/b", ".hidden", "x" * 200):
        with pytest.raises(ValueError):
            store.path(bad)


def test_prune_keeps_unfinished_and_recent_records(tmp_path: Path) -> None:
    store = RunStore(tmp_path)
    now = 100 * DAY
    store.save(_finished("old", now - 8 * DAY))
    store.save(_finished("recent", now - 1 * DAY))
    store.save(RunRecord("running", "yaml", created_at=now - 30 * DAY))
    assert store.prune(now=now) == ["old"]
    assert sorted(store.run_ids()) == ["recent", "running"]


def test_prune_keeps_only_the_last_finished_records(tmp_path: Path) -> None:
    store = RunStore(tmp_path)
    now = 100 * DAY
    for i in range(KEEP_LAST + 3):
        store.save(_finished(f"r{i}", now - i))
    removed = store.prune(now=now)
    assert sorted(removed) == sorted(f"r{i}" for i in range(KEEP_LAST, KEEP_LAST + 3))
    assert len(store.run_ids()) == KEEP_LAST
