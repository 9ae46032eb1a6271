"""Pure helpers of the Docker adapter: container facts from inspect data, pull progress, log frames.

Nothing here talks to the daemon; `agent.runtime.docker` does, and feeds
these the JSON the Engine API answers with.
"""

from __future__ import annotations

import re
import struct
from collections.abc import Callable, Iterable, Iterator, Mapping
from datetime import UTC, datetime
from typing import Any, NamedTuple

__all__ = [
    "INSTANCE_LABEL",
    "NODE_LABEL",
    "RUN_LABEL",
    "ContainerInfo",
    "PullTally",
    "error_text",
    "info_from_event",
    "info_from_inspect",
    "parse_time",
    "read_frames",
    "split_lines",
]

INSTANCE_LABEL = "gamenode.instance"
"""Every container gamenode starts carries this label (its value: the instance id)."""
RUN_LABEL = "gamenode.run"
NODE_LABEL = "gamenode.node"

_ZERO_TIME = "0001-01-01T00:00:00Z"
_FRACTION = re.compile(r"\.(\d+)")
_STREAMS = {1: "stdout", 2: "stderr"}
_DONE_STATUSES = frozenset({"Download complete", "Verifying Checksum", "Pull complete", "Already exists"})


class ContainerInfo(NamedTuple):
    """What gamenode needs to know about one container."""

    id: str
    name: str
    instance_id: str
    run_id: str
    state: str
    """Docker's state: created, running, paused, restarting, removing, exited, dead (or "removed" once destroyed)."""
    exit_code: int
    image: str
    started_at: datetime | None
    finished_at: datetime | None
    error: str
    labels: Mapping[str, str] = {}


def parse_time(text: str | None) -> datetime | None:
    """An Engine API timestamp (RFC 3339, nanoseconds) as an aware datetime; None for Docker's zero time."""
    if not text or text.startswith(_ZERO_TIME[:4]):
        return None
    text = _FRACTION.sub(lambda m: "." + m.group(1)[:6].ljust(6, "0"), text, count=1)
    try:
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def info_from_inspect(attrs: Mapping[str, Any]) -> ContainerInfo:
    """A `ContainerInfo` from `GET /containers/{id}/json`."""
    state = attrs.get("State") or {}
    config = attrs.get("Config") or {}
    labels: dict[str, str] = dict(config.get("Labels") or {})
    return ContainerInfo(
        id=str(attrs.get("Id", "")),
        name=str(attrs.get("Name", "")).lstrip("/"),
        instance_id=labels.get(INSTANCE_LABEL, ""),
        run_id=labels.get(RUN_LABEL, ""),
        state=str(state.get("Status", "")),
        exit_code=int(state.get("ExitCode") or 0),
        image=str(config.get("Image", "")),
        started_at=parse_time(state.get("StartedAt")),
        finished_at=parse_time(state.get("FinishedAt")),
        error=str(state.get("Error") or ("out of memory" if state.get("OOMKilled") else "")),
        labels=labels,
    )


def info_from_event(event: Mapping[str, Any]) -> ContainerInfo:
    """A `ContainerInfo` from an event alone (for a container that is gone: nothing left to inspect)."""
    actor = event.get("Actor") or {}
    attributes: dict[str, str] = {str(k): str(v) for k, v in (actor.get("Attributes") or {}).items()}
    action = str(event.get("Action") or event.get("status") or "")
    return ContainerInfo(
        id=str(actor.get("ID") or event.get("id") or ""),
        name=attributes.get("name", ""),
        instance_id=attributes.get(INSTANCE_LABEL, ""),
        run_id=attributes.get(RUN_LABEL, ""),
        state="removed" if action == "destroy" else "exited" if action == "die" else action,
        exit_code=int(attributes.get("exitCode") or 0),
        image=attributes.get("image", ""),
        started_at=None,
        finished_at=None,
        error="",
        labels=attributes,
    )


def error_text(exc: BaseException) -> str:
    """The daemon's reason for a failed call (its `explanation`), on one line, without Python's decoration."""
    text = str(getattr(exc, "explanation", "") or "").strip() or str(exc).strip() or type(exc).__name__
    text = " ".join(text.split())
    return text if len(text) <= 500 else text[:497] + "..."


def _mb(count: int) -> str:
    return f"{count / 1_000_000:.1f} MB"


class PullTally:
    """Sums a pull's downloaded bytes over its layers and picks out the status lines worth logging.

    Each layer's `Downloading` events carry `progressDetail.current/total`;
    a finished layer counts in full. Extraction progress is not counted
    (it would count the same bytes twice).
    """

    def __init__(self) -> None:
        self.layers: dict[str, list[int]] = {}
        """Layer id → [downloaded, total]."""
        self._seen: set[str] = set()
        self.digest = ""

    @property
    def done(self) -> int:
        return sum(done for done, _ in self.layers.values())

    @property
    def total(self) -> int:
        return sum(total for _, total in self.layers.values())

    @property
    def percent(self) -> float:
        total = self.total
        return 100.0 * self.done / total if total else 0.0

    def describe(self) -> str:
        """ "3.1 MB / 12.0 MB" (or the bytes so far when the total is unknown yet)."""
        total = self.total
        return f"{_mb(self.done)} / {_mb(total)}" if total else _mb(self.done)

    def feed(self, event: Mapping[str, Any]) -> str | None:
        """Account for one decoded pull event; the status line to log when it is a new one, else None."""
        status = str(event.get("status") or "")
        layer = str(event.get("id") or "")
        if status.startswith("Digest: "):
            self.digest = status.removeprefix("Digest: ").strip()
        if layer and status:
            self._count(layer, status, event.get("progressDetail") or {})
        line = f"{layer}: {status}" if layer else status
        if not status or line in self._seen:
            return None
        self._seen.add(line)
        return line

    def _count(self, layer: str, status: str, detail: Mapping[str, Any]) -> None:
        counts = self.layers.setdefault(layer, [0, 0])
        if status == "Downloading":
            counts[1] = int(detail.get("total") or counts[1])
            counts[0] = int(detail.get("current") or counts[0])
        elif status in _DONE_STATUSES:
            counts[0] = counts[1]


def split_lines(frames: Iterable[tuple[str, bytes]]) -> Iterator[tuple[str, str]]:
    """(stream, chunk) frames → (stream, line) per complete line, per stream; leftovers at the end."""
    pending: dict[str, bytes] = {}
    for stream, chunk in frames:
        data = pending.pop(stream, b"") + chunk
        *lines, rest = data.split(b"\n")
        for line in lines:
            yield stream, line.rstrip(b"\r").decode("utf-8", "replace")
        if rest:
            pending[stream] = rest
    for stream, rest in pending.items():
        yield stream, rest.decode("utf-8", "replace")


def read_frames(read: Callable[[int], bytes], tty: bool) -> Iterator[tuple[str, bytes]]:
    """The Engine API's multiplexed log stream (8-byte headers: stream id, length) as (stream, chunk).

    A TTY container's stream is raw: pass a `read` that returns what is there (`read1`).
    """
    if tty:
        while chunk := read(4096):
            yield "stdout", chunk
        return
    while len(header := read(8)) == 8:
        stream_id, length = struct.unpack(">BxxxL", header)
        data = read(length) if length else b""
        if length and not data:
            return
        yield _STREAMS.get(stream_id, "stdout"), data
