"""The one error tree of gamenode.

Every error a person may see derives from `GamenodeError` and carries a stable
`code`. The hub maps codes to HTTP and gRPC statuses in one place
(`console.hub.errors`); the CLI prints the message and exits non-zero.

    GamenodeError              code "error"
    ├── NotFound               code "not_found"       an id that does not exist
    ├── Conflict               code "conflict"        duplicate id, illegal transition, busy record
    │   └── AlreadyExists      code "conflict"        an id that is taken (gRPC tells it apart)
    ├── InvalidInput           code "invalid_input"   bad input, with field paths in `details`
    ├── Unauthorized           code "unauthorized"    missing or wrong credential
    ├── Unavailable            code "unavailable"     a resource held elsewhere (locked data dir), no agent
    ├── TimedOut               code "timeout"         an agent did not answer in time
    └── CorruptData            code "corrupt_data"    a file on disk that cannot be read back
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = [
    "AlreadyExists",
    "Conflict",
    "CorruptData",
    "FieldError",
    "GamenodeError",
    "InvalidInput",
    "NotFound",
    "TimedOut",
    "Unauthorized",
    "Unavailable",
]


@dataclass(frozen=True, slots=True)
class FieldError:
    """One mistake in an input: where (`a.b[2].c`, and for YAML text its `line`) and what."""

    path: str
    message: str
    line: int | None = None
    """The line of YAML text (a pipeline) the mistake is on, when known."""

    def __str__(self) -> str:
        where = f" (line {self.line})" if self.line is not None else ""
        return f"{self.path}: {self.message}{where}" if self.path else f"{self.message}{where}"


class GamenodeError(Exception):
    """Root of every error gamenode raises on purpose."""

    code = "error"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class NotFound(GamenodeError):
    code = "not_found"

    def __init__(self, kind: str, id: str) -> None:
        super().__init__(f"{kind} {id!r} not found")
        self.kind = kind
        self.id = id


class Conflict(GamenodeError):
    """A request that cannot be done in the present state; `details` may say why per record (`path` = its id)."""

    code = "conflict"

    def __init__(self, message: str, details: list[FieldError] | None = None) -> None:
        super().__init__(message)
        self.details = details or []


class AlreadyExists(Conflict):
    """A record with that id exists already (HTTP 409 like any conflict; gRPC ALREADY_EXISTS)."""


class InvalidInput(GamenodeError):
    code = "invalid_input"

    def __init__(self, message: str, details: list[FieldError] | None = None) -> None:
        if details:
            message = message + ": " + "; ".join(str(d) for d in details)
        super().__init__(message)
        self.details = details or []


class Unauthorized(GamenodeError):
    code = "unauthorized"


class Unavailable(GamenodeError):
    code = "unavailable"


class TimedOut(GamenodeError):
    code = "timeout"


class CorruptData(GamenodeError):
    """A file that exists but cannot be read back; it is never overwritten."""

    code = "corrupt_data"

    def __init__(self, path: str, problem: str, line: int | None = None) -> None:
        where = f"{path}:{line}" if line is not None else path
        super().__init__(f"{where}: {problem}")
        self.path = path
        self.line = line
        self.problem = problem
