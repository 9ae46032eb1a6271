"""What an action gets besides its inputs: who runs it, where its files go, and how it reports.

The engine builds one `StepContext` per step attempt; actions read it and
never reach past it (no globals), so unit tests hand them a context with a
fake runtime or a temporary data dir.

    async def run(ctx: StepContext, inputs: ImagePull) -> dict[str, Any]:
        ctx.progress(10.0, "pulling")
        ctx.log("Pulling fs layer", stream="stdout")
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from agent.errors import StepFailed
from agent.pipeline.ports import PortAllocator
from agent.runtime.docker import INSTANCE_LABEL, MANAGED_LABEL, NODE_LABEL, RUN_LABEL, DockerRuntime

__all__ = ["LogFn", "ProgressFn", "StepContext"]

ProgressFn = Callable[[float, str], None]
"""(percent 0-100, message): the engine rate-limits what it sends on."""

REDACTED = "***"


class LogFn(Protocol):
    def __call__(self, text: str, level: str = "info", stream: str = "") -> None:
        """One log line of the run (`stream`: "stdout"/"stderr" for a process's or container's output)."""
        ...


def _no_progress(percent: float, message: str) -> None:
    return None


def _no_log(text: str, level: str = "info", stream: str = "") -> None:
    return None


@dataclass
class StepContext:
    """One step attempt's surroundings."""

    run_id: str
    step: str
    node_id: str
    instance_id: str
    """"" when the run has none."""
    data_dir: Path
    """The instance's data dir (created by the engine): DATA_ROOT/<instance id or run id>."""
    runtime: DockerRuntime
    """Docker operations; they block: actions call them with `asyncio.to_thread`."""
    ports: PortAllocator
    """Persistent host-port reservations under the agent's state dir."""
    allow_shell: bool = False
    progress: ProgressFn = _no_progress
    log: LogFn = _no_log
    secrets: Sequence[str] = ()
    """Values to redact from log lines and messages."""
    scope: Mapping[str, Any] = field(default_factory=dict)
    """The run's template scope (params, steps, run, instance, node): what `file.render` substitutes."""

    @property
    def owner(self) -> str:
        """Who holds this run's resources (port reservations): the instance, else the run."""
        return self.instance_id or f"run-{self.run_id}"

    @property
    def container_name(self) -> str:
        """The default container name: `gn-<instance id>`, or `gn-run-<run id>` without an instance."""
        return f"gn-{self.instance_id}" if self.instance_id else f"gn-run-{self.run_id}"

    def labels(self) -> dict[str, str]:
        """The labels that tie a container (or network) to this instance, run and node."""
        return {
            INSTANCE_LABEL: self.instance_id,
            RUN_LABEL: self.run_id,
            NODE_LABEL: self.node_id,
            MANAGED_LABEL: "true",
        }

    def redact(self, text: str) -> str:
        """`text` with every secret value replaced by ***."""
        for secret in sorted((s for s in self.secrets if s), key=len, reverse=True):
            text = text.replace(secret, REDACTED)
        return text

    def path(self, relative: str, what: str = "path") -> Path:
        """`relative` inside the data dir (an absolute path is taken as is); StepFailed if it climbs out."""
        if not relative:
            return self.data_dir
        candidate = Path(relative)
        if candidate.is_absolute():
            return candidate
        resolved = (self.data_dir / candidate).resolve()
        if not resolved.is_relative_to(self.data_dir.resolve()):
            raise StepFailed(f"{what} {relative!r} leads out of the instance's data dir")
        return resolved

    def inside(self, relative: str, what: str = "path") -> Path:
        """Like `path`, but an absolute path is refused too: the result is always under the data dir."""
        if Path(relative).is_absolute():
            raise StepFailed(f"{what} {relative!r} must be relative to the instance's data dir")
        return self.path(relative, what)
