"""LogService: a non-blocking agent path, flushing queries, tails that a slow reader cannot slow."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from google.protobuf import timestamp_pb2

from console.errors import InvalidInput
from console.service.logs import LogBatch, LogQuery, LogService
from console.settings import HubSettings
from console.store.logs import LogRecord, LogStore
from console.validation import validate
from proto import gamenode_pb2 as pb

T0 = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
WAIT = 10.0
"""Seconds a test waits for something the service will do (a bound, never a measurement)."""


def chunk(*texts: str, source: str = "run:r1", level: str = "info", start: int = 0) -> pb.LogChunk:
    lines = []
    for i, text in enumerate(texts):
        at = timestamp_pb2.Timestamp()
        at.FromDatetime(T0 + timedelta(seconds=start + i))
        lines.append(pb.LogLine(at=at, level=level, text=text))
    return pb.LogChunk(source=source, lines=lines)


def texts(records: Sequence[LogRecord]) -> list[str]:
    return [r.text for r in records]


class StalledStore(LogStore):
    """A store whose writes wait until the test releases them."""

    def __init__(self, root: Path) -> None:
        super().__init__(root)
        self.entered = threading.Event()
        self.release = threading.Event()

    def append(self, records: Any) -> None:
        self.entered.set()
        assert self.release.wait(WAIT)
        super().append(records)


class FailingStore(LogStore):
    def append(self, records: Any) -> None:
        raise OSError("disk full")


@pytest.fixture
def service(tmp_path: Path) -> Iterator[LogService]:
    service = LogService(LogStore(tmp_path / "logs"))
    yield service
    service.close()


# --- append, query, close ------------------------------------------------------------------


def test_a_query_right_after_append_sees_the_lines(service: LogService) -> None:
    service.append("n1", chunk("a", "b"))
    service.append("n1", chunk("c", source="instance:i1", start=5))
    assert texts(service.query(LogQuery())) == ["a", "b", "c"]
    assert texts(service.query(LogQuery(instance="i1"))) == ["c"]
    assert service.stats().appended == 3


def test_lines_are_converted_with_defaults(service: LogService) -> None:
    line = pb.LogLine(level="WARN", text="x" * 70_000, stream="stderr")  # no time: the hub's
    before = datetime.now(UTC)
    service.append("n1", pb.LogChunk(source="agent", lines=[line, pb.LogLine(level="chatty", text="y")]))
    first, second = service.query(LogQuery())
    assert first.at >= before and first.level == "warning" and len(first.text) == 64 * 1024
    assert first.stream == "stderr" and first.node == "n1" and first.source == "agent"
    assert second.level == "info"


@pytest.mark.parametrize(("node", "source"), [("../n1", "agent"), ("n1", "run:../x"), ("n1", "bogus")])
def test_chunks_with_a_bad_node_or_source_are_refused_and_counted(
    service: LogService, node: str, source: str
) -> None:
    service.append(node, chunk("a", "b", source=source))
    assert service.stats().refused == 2
    assert service.query(LogQuery()) == []


def test_close_writes_what_is_queued(tmp_path: Path) -> None:
    store = StalledStore(tmp_path / "logs")
    service = LogService(store)
    service.append("n1", chunk("a"))
    assert store.entered.wait(WAIT)
    service.append("n1", chunk("b", "c", start=1))
    store.release.set()
    service.close()
    assert texts(LogStore(tmp_path / "logs").query(LogQuery().to_filter())) == ["a", "b", "c"]
    service.append("n1", chunk("late"))  # after close: ignored
    assert service.stats().appended == 3


def test_append_never_waits_for_a_stalled_writer_and_counts_drops(tmp_path: Path) -> None:
    store = StalledStore(tmp_path / "logs")
    service = LogService(store, queue_size=10)
    service.append("n1", chunk("first"))
    assert store.entered.wait(WAIT)  # the writer is stuck writing "first"
    for round_ in range(5):
        service.append("n1", chunk(*(f"{round_}-{i}" for i in range(10)), start=1 + 10 * round_))
    stats = service.stats()
    assert (stats.appended, stats.queued, stats.dropped) == (51, 10, 40)
    store.release.set()
    service.close()
    got = texts(store.query(LogQuery(limit=100).to_filter()))
    assert got == ["first", *(f"4-{i}" for i in range(10))]


def test_one_chunk_bigger_than_the_queue_keeps_its_newest_lines(tmp_path: Path) -> None:
    store = StalledStore(tmp_path / "logs")
    service = LogService(store, queue_size=3)
    service.append("n1", chunk("first"))
    assert store.entered.wait(WAIT)
    service.append("n1", chunk(*"abcdefg", start=1))
    assert service.stats().dropped == 4
    store.release.set()
    service.close()
    assert texts(store.query(LogQuery().to_filter())) == ["first", "e", "f", "g"]


def test_a_query_waits_for_the_writer_at_most_flush_timeout(tmp_path: Path) -> None:
    store = StalledStore(tmp_path / "logs")
    service = LogService(store, flush_timeout=0.01)
    service.append("n1", chunk("a"))
    assert store.entered.wait(WAIT)
    assert service.query(LogQuery()) == []  # "a" is not on disk yet
    assert not service.flush(0)
    store.release.set()
    assert service.flush(WAIT)
    assert texts(service.query(LogQuery())) == ["a"]
    service.close()


def test_write_failures_are_counted_and_the_writer_goes_on(tmp_path: Path) -> None:
    service = LogService(FailingStore(tmp_path / "logs"))
    service.append("n1", chunk("a", "b"))
    assert service.flush(WAIT)
    assert service.stats().failed == 2
    service.close()


def test_the_writer_sweeps_expired_files(tmp_path: Path) -> None:
    store = LogStore(tmp_path / "logs", retention=timedelta(days=1))
    store.append([LogRecord(T0, "n1", "agent", "info", "", "old")])
    service = LogService(store)  # sweeps as it starts
    service.append("n1", pb.LogChunk(source="run:r9", lines=[pb.LogLine(text="new")]))  # logged now
    assert service.flush(WAIT)
    service.close()
    assert [p.name for p in (tmp_path / "logs" / "n1").iterdir()] == ["run-r9.log"]


def test_from_settings_uses_the_data_dir_and_rotation_settings(tmp_path: Path) -> None:
    settings = HubSettings(data_dir=tmp_path, log_max_bytes=1000, log_keep=2, log_retention=60)
    service = LogService.from_settings(settings)
    try:
        assert service.store.root == tmp_path / "logs"
        assert (service.store.max_bytes, service.store.keep) == (1000, 2)
        assert service.store.retention == timedelta(seconds=60)
    finally:
        service.close()


# --- the query model ---------------------------------------------------------------------


@pytest.mark.parametrize(("data", "field"), [
    ({"q": "(", "regex": True}, "q"),
    ({"level": "loud"}, "level"),
    ({"limit": 0}, "limit"),
    ({"limit": 10_001}, "limit"),
    ({"node": "../x"}, "node"),
    ({"since": "yesterday"}, "since"),
])
def test_bad_queries_name_the_field(data: dict[str, Any], field: str) -> None:
    with pytest.raises(InvalidInput) as exc:
        validate(LogQuery, data, "log query")
    assert [d.path for d in exc.value.details] == [field]


def test_relative_times_count_back_from_now() -> None:
    query = LogQuery.model_validate({"since": "10m", "until": "1.5s", "level": "Warn", "q": ""})
    assert query.since is not None and query.until is not None
    assert timedelta(minutes=9) < datetime.now(UTC) - query.since < timedelta(minutes=11)
    assert query.since < query.until
    assert (query.level, query.q) == ("warning", None)


# --- tails ---------------------------------------------------------------------------------


async def next_batch(sub: Any) -> LogBatch:
    batch = await asyncio.wait_for(sub.next_batch(), WAIT)
    assert batch is not None
    return batch  # type: ignore[no-any-return]


async def test_a_tail_gets_matching_lines_as_they_arrive(service: LogService) -> None:
    with service.subscribe(LogQuery(run="r1", level="warning")) as sub:
        service.append("n1", chunk("quiet", "loud", level="error"))  # both error
        service.append("n1", chunk("info line"))
        service.append("n1", chunk("other run", source="run:r2", level="error"))
        batch = await next_batch(sub)
    assert (texts(batch.entries), batch.dropped) == (["quiet", "loud"], 0)


async def test_a_slow_tail_drops_and_counts_without_affecting_a_fast_one(service: LogService) -> None:
    fast_got: list[str] = []
    with service.subscribe(LogQuery(), capacity=5) as slow, service.subscribe(LogQuery(), capacity=5) as fast:
        for round_ in range(10):
            service.append("n1", chunk(*(f"{round_}-{i}" for i in range(3))))
            batch = await next_batch(fast)
            assert batch.dropped == 0
            fast_got += texts(batch.entries)
        slow_batch = await next_batch(slow)
    assert fast_got == [f"{r}-{i}" for r in range(10) for i in range(3)]
    assert texts(slow_batch.entries) == ["8-1", "8-2", "9-0", "9-1", "9-2"]
    assert slow_batch.dropped == 25
    assert service.stats().dropped == 0  # the writer lost nothing


async def test_tail_ends_when_the_service_closes(tmp_path: Path) -> None:
    service = LogService(LogStore(tmp_path / "logs"))
    got: list[LogBatch] = []

    async def read() -> None:
        async for batch in service.tail(LogQuery()):
            got.append(batch)

    reader = asyncio.create_task(read())
    await asyncio.sleep(0)  # the tail subscribes
    service.append("n1", chunk("a"))
    await asyncio.to_thread(service.close)
    await asyncio.wait_for(reader, WAIT)
    assert [texts(b.entries) for b in got] == [["a"]]


async def test_a_tail_opened_after_close_ends_at_once(tmp_path: Path) -> None:
    service = LogService(LogStore(tmp_path / "logs"))
    service.close()
    with service.subscribe(LogQuery()) as sub:
        assert await asyncio.wait_for(sub.next_batch(), WAIT) is None


async def test_a_tail_fed_from_another_thread_is_woken(service: LogService) -> None:
    with service.subscribe(LogQuery()) as sub:
        waiting = asyncio.create_task(sub.next_batch())
        await asyncio.sleep(0)
        await asyncio.to_thread(service.append, "n1", chunk("from a thread"))
        batch = await asyncio.wait_for(waiting, WAIT)
    assert batch is not None and texts(batch.entries) == ["from a thread"]


async def test_a_closed_tail_stops_receiving(service: LogService) -> None:
    sub = service.subscribe(LogQuery())
    sub.close()
    service.append("n1", chunk("a"))
    assert await asyncio.wait_for(sub.next_batch(), WAIT) is None


def test_drops_are_warned_about_at_most_once_a_minute(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    now = [0.0]
    store = StalledStore(tmp_path / "logs")
    service = LogService(store, queue_size=1, clock=lambda: now[0], sweep_every=1e9)
    service.append("n1", chunk("first"))
    assert store.entered.wait(WAIT)
    with caplog.at_level("WARNING", logger="console.service.logs"):
        for second in (1.0, 30.0, 59.0, 62.0):
            now[0] = second
            service.append("n1", chunk("a", "b"))
    warnings = [r.getMessage() for r in caplog.records]
    assert warnings == [f"log writer is behind: {n} line(s) dropped so far" for n in (1, 7)]
    store.release.set()
    service.close()
