"""RunStore and RunSecretStore: runs round-trip; secrets stay in 0600 files with no index."""

from __future__ import annotations

import stat
from datetime import UTC, datetime
from pathlib import Path

from console.models import PipelineRun, RunSecrets, RunState, StepRecord, StepState
from console.store import RunSecretStore, RunStore

T0 = datetime(2024, 5, 1, 12, 30, tzinfo=UTC)


def _run(id: str = "run-1", node_id: str = "n1", **fields: object) -> PipelineRun:
    base: dict[str, object] = {"pipeline": "inline", "pipeline_yaml": "steps: []", "created_at": T0,
                               "updated_at": T0}
    return PipelineRun.model_validate({"id": id, "node_id": node_id, **base, **fields})


def test_a_run_with_steps_round_trips(tmp_path: Path) -> None:
    store = RunStore(tmp_path / "runs")
    store.load()
    run = _run(state=RunState.RUNNING, params={"image": "x", "password": "***"}, steps=[
        StepRecord(name="pull", action="image.pull", state=StepState.SUCCEEDED, progress=100, attempt=1,
                   started_at=T0, finished_at=T0, outputs={"digest": "sha256:ab", "bytes": 12}),
        StepRecord(name="cleanup", action="container.remove", cleanup=True),
    ])
    store.add(run)
    store.add(_run("run-2", node_id="n2"))
    store.close()

    again = RunStore(tmp_path / "runs")
    again.load()
    assert again.get("run-1") == run
    assert [r.id for r in again.on_node("n1")] == ["run-1"]
    assert again.get("run-1").step("pull") == run.steps[0]
    assert again.get("run-1").step("nope") is None


def test_run_secrets_are_private_and_never_indexed(tmp_path: Path) -> None:
    store = RunSecretStore(tmp_path / "run-secrets")
    store.load()
    store.put(RunSecrets(id="run-1", params={"password": "hunter2"}))
    store.close()

    assert stat.S_IMODE((tmp_path / "run-secrets").stat().st_mode) == 0o700
    assert stat.S_IMODE((tmp_path / "run-secrets" / "run-1.yaml").stat().st_mode) == 0o600
    assert not (tmp_path / "run-secrets" / ".index.json").exists()
    again = RunSecretStore(tmp_path / "run-secrets")
    again.load()
    assert again.get("run-1").params == {"password": "hunter2"}
