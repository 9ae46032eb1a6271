"""Log lines batched into `LogChunk`s: at most `max_lines` lines or `max_delay` seconds per chunk.

    batch = LineBatcher("run:r1", session.emit_log)
    batch.add("pulling", level="info")     # from the event loop's thread only
    batch.flush()                          # at the end: send what is buffered now

A chunk is sent when `max_lines` lines are buffered, or `max_delay` seconds
after the first buffered line, whichever comes first. `add` must be called on
the event loop (threads use `loop.call_soon_threadsafe(batch.add, ...)`).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from proto import gamenode_pb2 as pb

__all__ = ["MAX_DELAY", "MAX_LINES", "REDACTED", "LineBatcher", "log_line", "redact", "redact_value"]

MAX_LINES = 200
MAX_DELAY = 0.5
REDACTED = "***"


def redact(text: str, secrets: Iterable[str]) -> str:
    """`text` with every (non-empty) secret replaced by `***`, the longest first (so no part of one is left)."""
    for secret in sorted(secrets, key=len, reverse=True):
        if secret and secret in text:
            text = text.replace(secret, REDACTED)
    return text


def redact_value(value: Any, secrets: Sequence[str]) -> Any:
    """A JSON value with every secret replaced in its strings (keys included)."""
    if isinstance(value, str):
        return redact(value, secrets)
    if isinstance(value, dict):
        return {redact(str(key), secrets): redact_value(item, secrets) for key, item in value.items()}
    if isinstance(value, list):
        return [redact_value(item, secrets) for item in value]
    return value


def log_line(text: str, level: str = "info", stream: str = "", at: float | None = None) -> pb.LogLine:
    line = pb.LogLine(level=level, text=text, stream=stream)
    line.at.FromNanoseconds(int((time.time() if at is None else at) * 1e9))
    return line


class LineBatcher:
    """Buffers lines for one source and emits them as `LogChunk`s."""

    def __init__(self, source: str, emit: Callable[[pb.LogChunk], object], *, max_lines: int = MAX_LINES,
                 max_delay: float = MAX_DELAY, secrets: Sequence[str] = ()) -> None:
        self.source = source
        self._emit = emit
        self.max_lines = max_lines
        self.max_delay = max_delay
        self.secrets = list(secrets)
        self._lines: list[pb.LogLine] = []
        self._timer: asyncio.TimerHandle | None = None

    def add(self, text: str, level: str = "info", stream: str = "") -> None:
        """Buffer one line (redacted); may send a chunk now or schedule one."""
        self._lines.append(log_line(redact(text, self.secrets), level, stream))
        if len(self._lines) >= self.max_lines:
            self.flush()
        elif self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(self.max_delay, self.flush)

    def flush(self) -> None:
        """Send the buffered lines now (nothing when empty)."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._lines:
            lines, self._lines = self._lines, []
            self._emit(pb.LogChunk(source=self.source, lines=lines))
