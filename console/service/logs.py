"""LogService: agents' log lines into the log files, queries over them, live tails.

    agent stream ─► append() ─► bounded queue ─► writer thread ─► LogStore files
       (event loop,               (oldest lines            (batches, one write
        never waits)               dropped when full)       per file per batch)
                     └─► each tail's bounded buffer ─► tail() readers

`append` runs on the hub's event loop for every `LogChunk`: it converts the
lines to records, puts them on the writer's queue and in the buffer of every
matching tail, and returns; it takes a lock only for as long as a deque
append. When the writer falls behind (a slow disk) the queue keeps its newest
`queue_size` lines: the oldest are dropped and counted (`stats().dropped`),
with a warning at most once a minute. A tail whose reader is slow loses its
oldest buffered lines the same way and is told how many in its next batch; it
never slows the agent path or another reader.

Secrets: agents redact secret param values from the lines they send. As a
second guard (an older agent, a container printing a secret during its run)
`append` replaces, in a node's lines, the secret values of the node's runs in
progress that `secrets` (the hub sets `RunService.secrets_on`) names.

A query first waits (up to `flush_timeout`) until every line appended before
it was called is written, so a query right after an append sees its lines;
a stalled writer delays a query by at most that much, then it answers what is
on disk. The writer thread also sweeps expired files (`sweep_every`).
`close()` writes what is queued, stops the thread and ends the tails.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import re
import threading
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

from pydantic import Field, ValidationInfo, field_validator

from agent.logbatch import redact
from console.errors import GamenodeError
from console.models import Id, Model, Timestamp, utcnow
from console.settings import HubSettings
from console.store.logs import (
    DEFAULT_LIMIT,
    MAX_LIMIT,
    LogFilter,
    LogMatcher,
    LogRecord,
    LogStore,
    check_id,
    check_source,
    level_name,
)
from proto import gamenode_pb2 as pb

__all__ = ["LogBatch", "LogQuery", "LogService", "LogStats", "Subscription"]

log = logging.getLogger(__name__)

MAX_TEXT = 64 * 1024
"""Characters of one line's text kept; the rest is cut."""
TAIL_BATCH = 500
"""Entries per tail batch at most."""
WRITE_SLICE = 256
"""Lines the writer encodes and writes between two chances for the event loop to run."""
WARN_EVERY = 60.0
"""Seconds between two warnings of the same kind (drops, refused chunks, write failures)."""
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_DURATION = re.compile(r"^(\d+(?:\.\d+)?)(ms|s|m|h|d)$")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


class LogQuery(Model):
    """A log query (REST query string, gRPC `LogQuery`, a tail's filter)."""

    node: Id | None = None
    instance: Id | None = None
    run: Id | None = None
    since: Timestamp | None = None
    """Entries at or after: ISO 8601 (UTC if no zone) or a duration back from now (`10m`, `2h`, `1d`)."""
    until: Timestamp | None = None
    """Entries at or before (same forms as `since`)."""
    regex: bool = False
    """`q` is a regular expression (`re.search`) rather than a substring."""
    q: Annotated[str, Field(max_length=1024)] | None = None
    level: str | None = None
    """The lowest level shown: debug, info, warning (or warn), error."""
    limit: int = Field(default=DEFAULT_LIMIT, ge=1, le=MAX_LIMIT)
    """The last `limit` matches, in time order (tails ignore it)."""

    @field_validator("since", "until", mode="before")
    @classmethod
    def _relative(cls, value: Any) -> Any:
        if isinstance(value, str) and (m := _DURATION.match(value.strip())):
            return utcnow() - timedelta(seconds=float(m[1]) * _UNIT_SECONDS[m[2]])
        return value

    @field_validator("q")
    @classmethod
    def _q(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value and info.data.get("regex"):
            try:
                re.compile(value)
            except re.error as exc:
                raise ValueError(f"not a valid regular expression: {exc}") from None
        return value or None

    @field_validator("level")
    @classmethod
    def _level(cls, value: str | None) -> str | None:
        if not value:
            return None
        try:
            return level_name(value, None)
        except GamenodeError:
            raise ValueError(f"expected one of debug, info, warning, error (got {value!r})") from None

    def to_filter(self) -> LogFilter:
        return LogFilter(node=self.node, instance=self.instance, run=self.run, since=self.since, until=self.until,
                         q=self.q, regex=self.regex, level=self.level, limit=self.limit)


@dataclass(frozen=True)
class LogBatch:
    """What a tail yields: new entries, and how many were left out since the last batch (a slow reader)."""

    entries: list[LogRecord]
    dropped: int = 0


@dataclass(frozen=True)
class LogStats:
    appended: int
    """Lines accepted by `append` so far."""
    queued: int
    """Lines waiting for the writer."""
    dropped: int
    """Lines dropped because the writer's queue was full (never written)."""
    refused: int
    """Lines of chunks with a bad node id or source."""
    failed: int
    """Lines the writer could not write (disk errors)."""
    tails: int
    """Live tails open."""


class _Throttle:
    """Log a warning of each kind at most once per `every` seconds."""

    def __init__(self, clock: Callable[[], float], every: float = WARN_EVERY) -> None:
        self.clock, self.every = clock, every
        self._last: dict[str, float] = {}

    def warn(self, kind: str, message: str, *args: object) -> None:
        now = self.clock()
        last = self._last.get(kind)
        if last is None or now - last >= self.every:
            self._last[kind] = now
            log.warning(message, *args)


class Subscription:
    """One live tail: a bounded buffer of matching lines; the oldest are dropped (and counted) when it is full."""

    def __init__(self, matcher: LogMatcher, capacity: int, on_close: Callable[[Subscription], None]) -> None:
        self.matcher = matcher
        self.capacity = capacity
        self._on_close = on_close
        self._loop = asyncio.get_running_loop()
        self._loop_thread = threading.get_ident()
        self._lock = threading.Lock()
        self._buffer: collections.deque[LogRecord] = collections.deque()
        self._dropped = 0
        self._ready = asyncio.Event()
        self.closed = False

    def offer(self, records: Sequence[LogRecord]) -> None:
        """Buffer the records that match (any thread; never waits for the reader)."""
        matching = [r for r in records if self.matcher.matches(r)]
        if not matching or self.closed:
            return
        with self._lock:
            self._buffer.extend(matching)
            excess = len(self._buffer) - self.capacity
            for _ in range(max(0, excess)):
                self._buffer.popleft()
            self._dropped += max(0, excess)
        self._wake()

    def close(self) -> None:
        """End the tail (any thread): the reader gets what is buffered, then the end."""
        if not self.closed:
            self.closed = True
            self._on_close(self)
            self._wake()

    async def next_batch(self, max_entries: int = TAIL_BATCH) -> LogBatch | None:
        """The next entries (waiting for some); None once closed and drained."""
        while True:
            with self._lock:
                if self._buffer or self._dropped:
                    count = min(max_entries, len(self._buffer))
                    batch = LogBatch([self._buffer.popleft() for _ in range(count)], self._dropped)
                    self._dropped = 0
                    return batch
                if self.closed:
                    return None
                self._ready.clear()
            await self._ready.wait()

    def __enter__(self) -> Subscription:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _wake(self) -> None:
        if threading.get_ident() == self._loop_thread:
            self._ready.set()
        elif not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self._ready.set)


class LogService:
    """The only writer of the log files; see the module docstring."""

    def __init__(
        self,
        store: LogStore,
        *,
        queue_size: int = 100_000,
        batch_size: int = 2_000,
        tail_buffer: int = 10_000,
        flush_timeout: float = 5.0,
        sweep_every: float = 3600.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.store = store
        self.queue_size = queue_size
        self.batch_size = batch_size
        self.tail_buffer = tail_buffer
        self.flush_timeout = flush_timeout
        self.sweep_every = sweep_every
        self.clock = clock
        self.secrets: Callable[[str], Sequence[str]] | None = None
        """node id → secret values to replace by `***` in its lines (longest first); None: none."""
        self._warn = _Throttle(clock)
        self._cond = threading.Condition()
        self._queue: collections.deque[LogRecord] = collections.deque()
        self._appended = self._dropped = self._refused = self._failed = 0
        self._flight_lo: int | None = None
        """Seq of the first line of the batch being written (lines are numbered from 1 as appended)."""
        self._closing = False
        self._subscriptions: set[Subscription] = set()
        self._thread = threading.Thread(target=self._run, name="gamenode-logs", daemon=True)
        self._thread.start()

    @classmethod
    def from_settings(cls, settings: HubSettings, **options: Any) -> LogService:
        """A service over `DATA_DIR/logs` with the settings' rotation and retention."""
        store = LogStore(settings.data_dir / "logs", settings.log_max_bytes, settings.log_keep,
                         timedelta(seconds=settings.log_retention))
        return cls(store, **options)

    # --- the agent path (event loop; never waits) ---------------------------------

    def append(self, node_id: str, chunk: pb.LogChunk) -> None:
        """Queue the chunk's lines for writing and hand them to the tails that match; returns at once."""
        try:
            records = _records(node_id, chunk)
        except GamenodeError as exc:
            self._refused += len(chunk.lines)
            self._warn.warn("refused", "log lines from node %r refused: %s", node_id, exc.message)
            return
        if records and self.secrets is not None:
            records = _scrubbed(records, self.secrets(node_id))
        if records:
            self.append_records(records)

    def append_records(self, records: Sequence[LogRecord]) -> None:
        """`append` for records already converted (their node and source must be valid)."""
        with self._cond:
            if self._closing:
                return
            dropped = self._enqueue(records)
            self._cond.notify()
        if dropped:
            self._warn.warn("dropped", "log writer is behind: %d line(s) dropped so far", self._dropped)
        for subscription in list(self._subscriptions):
            subscription.offer(records)

    def _enqueue(self, records: Sequence[LogRecord]) -> int:
        """Add to the queue (lock held), dropping its oldest lines past `queue_size`; how many were dropped."""
        self._appended += len(records)
        self._queue.extend(records[-self.queue_size :])
        excess = max(0, len(self._queue) - self.queue_size)
        for _ in range(excess):
            self._queue.popleft()
        dropped = excess + max(0, len(records) - self.queue_size)
        self._dropped += dropped
        return dropped

    # --- queries and tails --------------------------------------------------------

    def query(self, query: LogQuery) -> list[LogRecord]:
        """The last `query.limit` matching entries, oldest first (blocking: run it in a worker thread)."""
        flt = query.to_filter()
        flt.compile()  # bad input is refused before waiting for the writer
        self.flush(self.flush_timeout)
        return self.store.query(flt)

    def subscribe(self, query: LogQuery, capacity: int | None = None) -> Subscription:
        """A live tail of the lines appended from now on that match `query` (on the event loop)."""
        subscription = Subscription(query.to_filter().compile(), capacity or self.tail_buffer,
                                    self._subscriptions.discard)
        with self._cond:
            closing = self._closing
            self._subscriptions.add(subscription)
        if closing:
            subscription.close()
        return subscription

    async def tail(self, query: LogQuery) -> AsyncIterator[LogBatch]:
        """Batches of matching lines as they arrive, until the service closes (or the caller stops)."""
        with self.subscribe(query) as subscription:
            while (batch := await subscription.next_batch()) is not None:
                yield batch

    # --- the writer ---------------------------------------------------------------

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until every line appended so far is written (or dropped); False on timeout."""
        with self._cond:
            target = self._appended
            return self._cond.wait_for(lambda: self._done_upto(target), timeout)

    def _done_upto(self, target: int) -> bool:
        left_queue = self._appended - len(self._queue)
        return left_queue >= target and (self._flight_lo is None or self._flight_lo > target)

    def stats(self) -> LogStats:
        with self._cond:
            return LogStats(self._appended, len(self._queue), self._dropped, self._refused, self._failed,
                            len(self._subscriptions))

    def close(self) -> None:
        """Write what is queued, stop the writer, end the tails (blocking: `asyncio.to_thread` on a loop)."""
        with self._cond:
            self._closing = True
            self._cond.notify_all()
        self._thread.join()
        for subscription in list(self._subscriptions):
            subscription.close()

    def _run(self) -> None:
        next_sweep = self.clock()
        while True:
            batch = self._take(max(0.0, next_sweep - self.clock()))
            if batch is None:
                return
            if batch:
                self._write(batch)
            if self.clock() >= next_sweep:
                self._sweep()
                next_sweep = self.clock() + self.sweep_every

    def _take(self, timeout: float) -> list[LogRecord] | None:
        """The next batch; [] when `timeout` passed with nothing queued; None once closing and drained."""
        with self._cond:
            if not self._queue and not self._closing:
                self._cond.wait(timeout)
            if not self._queue:
                return None if self._closing else []
            self._flight_lo = self._appended - len(self._queue) + 1
            count = min(self.batch_size, len(self._queue))
            return [self._queue.popleft() for _ in range(count)]

    def _write(self, batch: list[LogRecord]) -> None:
        failed = 0
        try:
            for i in range(0, len(batch), WRITE_SLICE):
                failed += self._write_slice(batch[i : i + WRITE_SLICE])
                time.sleep(0)  # hand the GIL to the event loop between slices: it never waits long for it
        finally:
            with self._cond:
                self._failed += failed
                self._flight_lo = None
                self._cond.notify_all()

    def _write_slice(self, records: list[LogRecord]) -> int:
        """Write `records`; how many were lost (all of them when the store fails)."""
        try:
            self.store.append(records)
        except Exception as exc:
            self._warn.warn("failed", "writing %d log line(s) failed: %s", len(records), exc)
            return len(records)
        return 0

    def _sweep(self) -> None:
        try:
            deleted = self.store.sweep()
        except Exception as exc:
            self._warn.warn("sweep", "sweeping old log files failed: %s", exc)
        else:
            if deleted:
                log.info("deleted %d expired log file(s)", deleted)


def _scrubbed(records: list[LogRecord], secrets: Sequence[str]) -> list[LogRecord]:
    """The records with each secret value in their text replaced by `***`."""
    if not secrets:
        return records
    out = []
    for record in records:
        text = redact(record.text, secrets)
        out.append(record if text == record.text else replace(record, text=text))
    return out


def _records(node_id: str, chunk: pb.LogChunk) -> list[LogRecord]:
    """The chunk's lines as records; InvalidInput for a bad node id or source."""
    check_id(node_id, "node")
    check_source(chunk.source)
    now: datetime | None = None
    records = []
    for line in chunk.lines:
        if line.HasField("at"):
            at = _EPOCH + timedelta(seconds=line.at.seconds, microseconds=line.at.nanos // 1000)
        else:
            at = now = now or utcnow()
        records.append(LogRecord(at, node_id, chunk.source, level_name(line.level or "info"), line.stream[:16],
                                 line.text[:MAX_TEXT]))
    return records
