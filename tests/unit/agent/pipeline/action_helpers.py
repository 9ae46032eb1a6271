"""A `StepContext` for unit tests of the actions: a temporary data dir, recorded progress and log lines."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from agent.pipeline.actions import ACTION_RUNNERS
from agent.pipeline.context import StepContext
from agent.pipeline.inputs import ACTIONS
from agent.pipeline.ports import PortAllocator
from agent.runtime import DockerRuntime


class Recorder:
    def __init__(self) -> None:
        self.progress: list[tuple[float, str]] = []
        self.logs: list[tuple[str, str, str]] = []

    def on_progress(self, percent: float, message: str) -> None:
        self.progress.append((percent, message))

    def on_log(self, text: str, level: str = "info", stream: str = "") -> None:
        self.logs.append((text, level, stream))

    def lines(self, stream: str | None = None) -> list[str]:
        return [text for text, _, s in self.logs if stream is None or s == stream]


def make_ctx(tmp_path: Path, recorder: Recorder | None = None, **extra: Any) -> StepContext:
    """A context whose runtime is never reached (the SDK is loaded lazily)."""
    recorder = recorder or Recorder()
    data_dir = tmp_path / "data"
    data_dir.mkdir(parents=True, exist_ok=True)
    return StepContext(run_id="run-1", step="step", node_id="node-1", instance_id=extra.pop("instance_id", "inst-1"),
                       data_dir=data_dir, runtime=DockerRuntime(socket_path=str(tmp_path / "no.sock")),
                       ports=PortAllocator(tmp_path / "state"), progress=recorder.on_progress, log=recorder.on_log,
                       **extra)


async def act(ctx: StepContext, action: str, **inputs: Any) -> dict[str, Any]:
    return await ACTION_RUNNERS[action](ctx, ACTIONS[action].model_validate(inputs))
