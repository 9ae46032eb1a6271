"""The agent's errors (the agent ships without `console`, so it has its own small tree).

The codes match `console.errors` so that a message means the same on both sides.

    AgentError                 code "error"
    ├── ConfigError            code "invalid_input"   bad flag, environment value or token file
    ├── HubRefused             code "unauthorized"    the hub rejected the node's credential
    ├── HubUnavailable         code "unavailable"     the hub cannot be reached or dropped the stream
    ├── StateError             code "corrupt_data"    the state dir cannot be read back
    ├── PipelineError          code "invalid_input"   a pipeline (or its params) is invalid; `.problems` says where
    └── StepFailed             code "step_failed"     a pipeline step's action failed; the message says what and why
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

__all__ = [
    "AgentError",
    "ConfigError",
    "HubRefused",
    "HubUnavailable",
    "PipelineError",
    "Problem",
    "StateError",
    "StepFailed",
]


class AgentError(Exception):
    """Root of every error the agent raises on purpose."""

    code = "error"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class ConfigError(AgentError):
    code = "invalid_input"


class HubRefused(AgentError):
    code = "unauthorized"


class HubUnavailable(AgentError):
    code = "unavailable"


class StateError(AgentError):
    code = "corrupt_data"


class Problem(NamedTuple):
    """One mistake in a pipeline: where (field path, YAML line) and what."""

    path: str
    message: str
    line: int | None = None
    source: str = ""

    def __str__(self) -> str:
        where = f" ({self.source}:{self.line})" if self.line is not None and self.source else (
            f" (line {self.line})" if self.line is not None else "")
        return f"{self.path}: {self.message}{where}" if self.path else f"{self.message}{where}"


class PipelineError(AgentError):
    code = "invalid_input"

    def __init__(self, problems: Sequence[Problem] | str) -> None:
        self.problems: list[Problem] = [Problem("", problems)] if isinstance(problems, str) else list(problems)
        super().__init__("; ".join(str(p) for p in self.problems))


class StepFailed(AgentError):
    code = "step_failed"
