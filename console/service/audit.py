"""AuditLog: who changed what, through which door, and how it ended.

One JSON object a line in `DATA_DIR/audit.log`, appended as each call ends:

    {"time": "2025-01-02T03:04:05.678Z", "actor": "ci-bot", "role": "operator", "via": "rest",
     "action": "POST /api/v1/nodes/{node_id}/pipelines", "target": {"kind": "node", "id": "n1"},
     "status": "201", "detail": "..."}

`actor` is an API token's name, "unix socket" (a console on the hub's socket),
"node:<id>" (an agent) or "anonymous" (no valid token); `status` is the HTTP
code or the gRPC status name. Callers pass ids and names only, never a token,
key or secret param: the log is meant to be read and shipped.

The file is rotated at `max_bytes` to `audit.log.1` (and `.1` to `.2`, ...),
keeping `keep` old files. `query` reads newest first, across the rotated files.
"""

from __future__ import annotations

import json
import logging
import os
import threading
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any

from pydantic import Field, StringConstraints, ValidationError

from console.models import Model, Timestamp, utcnow

__all__ = ["AUDIT_FILE", "AuditEntry", "AuditLog", "AuditTarget"]

log = logging.getLogger(__name__)

AUDIT_FILE = "audit.log"
MAX_BYTES = 10 * 1024 * 1024
KEEP = 3
MAX_LIMIT = 10_000

Short = Annotated[str, StringConstraints(max_length=256)]


class AuditTarget(Model):
    """The record a call acted on."""

    kind: Short
    """node, instance, run, rollout, gamecard, platform, api_token, ..."""
    id: Short = ""
    """Empty when the call names no single record (e.g. a rollout by selector before it exists)."""


class AuditEntry(Model):
    time: Timestamp = Field(default_factory=utcnow)
    actor: Short
    role: Short = ""
    """The actor's role ("" when it had none: an anonymous call)."""
    via: Short
    """rest, grpc or agent."""
    action: Short
    """`METHOD /route/{param}` (REST) or `Service.Method` (gRPC)."""
    target: AuditTarget | None = None
    status: Short
    """HTTP code or gRPC status name."""
    detail: Annotated[str, StringConstraints(max_length=1024)] | None = None


class AuditLog:
    """Appends entries to `path` (rotated), answers queries newest first. Safe from any thread."""

    def __init__(
        self, path: Path, max_bytes: int = MAX_BYTES, keep: int = KEEP, clock: Callable[[], datetime] = utcnow
    ) -> None:
        self.path = Path(path)
        self.max_bytes = max_bytes
        self.keep = keep
        self.clock = clock
        self._lock = threading.Lock()

    def record(
        self, *, actor: str, via: str, action: str, status: str | int, role: str = "",
        target: tuple[str, str] | None = None, detail: str | None = None,
    ) -> AuditEntry:
        """Append one entry (and rotate when the file is full); the entry.

        A failure to write is logged, never raised: the call it describes has already happened.
        """
        entry = AuditEntry(
            time=self.clock(), actor=actor[:256], role=str(role)[:256], via=via, action=action[:256],
            target=AuditTarget(kind=target[0][:256], id=target[1][:256]) if target else None,
            status=str(status)[:256], detail=detail[:1024] if detail else None,
        )
        line = entry.model_dump_json(exclude_none=True) + "\n"
        try:
            with self._lock:
                self._append(line.encode())
        except OSError as exc:
            log.error("cannot write the audit log %s: %s (entry: %s)", self.path, exc, line.strip())
        return entry

    def query(
        self, limit: int = 100, actor: str | None = None, kind: str | None = None, target: str | None = None
    ) -> list[AuditEntry]:
        """Up to `limit` entries, newest first, with this actor, target kind and target id (each if given)."""
        limit = max(0, min(limit, MAX_LIMIT))
        found: list[AuditEntry] = []
        with self._lock:
            files = [self._rotated(i) for i in range(self.keep + 1)]
        for entry in _entries(files):
            if len(found) >= limit:
                break
            if actor is not None and entry.actor != actor:
                continue
            if kind is not None and (entry.target is None or entry.target.kind != kind):
                continue
            if target is not None and (entry.target is None or entry.target.id != target):
                continue
            found.append(entry)
        return found

    # --- internals ------------------------------------------------------------------

    def _rotated(self, index: int) -> Path:
        return self.path if index == 0 else self.path.with_name(f"{self.path.name}.{index}")

    def _append(self, data: bytes) -> None:
        fd = self._open()
        try:
            size = os.fstat(fd).st_size
            if size and size + len(data) > self.max_bytes:
                os.close(fd)
                fd = -1
                self._rotate()
                fd = self._open()
                size = 0
            if size and os.pread(fd, 1, size - 1) != b"\n":
                data = b"\n" + data  # the last write was torn (a crash): keep this entry on a line of its own
            os.write(fd, data)
        finally:
            if fd >= 0:
                os.close(fd)

    def _open(self) -> int:
        return os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o600)

    def _rotate(self) -> None:
        """audit.log → .1 → .2 ... → .keep (the oldest is dropped)."""
        if self.keep <= 0:
            self.path.unlink(missing_ok=True)
            return
        self._rotated(self.keep).unlink(missing_ok=True)
        for index in range(self.keep - 1, -1, -1):
            source = self._rotated(index)
            if source.exists():
                os.replace(source, self._rotated(index + 1))


def _entries(files: list[Path]) -> Iterator[AuditEntry]:
    """Every readable entry of `files` (newest file first), newest first; broken lines are skipped."""
    for path in files:
        try:
            lines = path.read_bytes().splitlines()
        except FileNotFoundError:
            continue
        for raw in reversed(lines):
            entry = _parse(raw)
            if entry is not None:
                yield entry


def _parse(raw: bytes) -> AuditEntry | None:
    try:
        data: Any = json.loads(raw)
        return AuditEntry.model_validate(data)
    except (ValueError, ValidationError):
        return None  # a torn last line (a crash mid-write) or a hand edit
