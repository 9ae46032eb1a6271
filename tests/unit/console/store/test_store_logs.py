"""LogStore: JSON-lines files per node and source, rotation, retention, filtered reads."""

from __future__ import annotations

import json
import os
import tempfile
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from console.errors import InvalidInput
from console.store.logs import LogFilter, LogRecord, LogStore

T0 = datetime(2024, 5, 1, 12, 0, 0, tzinfo=UTC)


def rec(seconds: float, text: str = "line", node: str = "n1", source: str = "run:r1", level: str = "info",
        stream: str = "") -> LogRecord:
    return LogRecord(T0 + timedelta(seconds=seconds), node, source, level, stream, text)


@pytest.fixture
def store(tmp_path: Path) -> LogStore:
    return LogStore(tmp_path / "logs")


def texts(records: list[LogRecord]) -> list[str]:
    return [r.text for r in records]


def field_paths(exc: pytest.ExceptionInfo[InvalidInput]) -> list[str]:
    return [d.path for d in exc.value.details]


# --- files ---------------------------------------------------------------------------


def test_append_writes_one_json_line_per_entry_in_its_source_file(store: LogStore) -> None:
    store.append([rec(0.5, "pulling", stream="stdout"), rec(1, "agent up", source="agent"),
                  rec(2, "game", source="instance:i-1", level="warning")])
    node_dir = store.root / "n1"
    assert sorted(p.name for p in node_dir.iterdir()) == ["agent.log", "instance-i-1.log", "run-r1.log"]
    line = (node_dir / "run-r1.log").read_text()
    assert line.endswith("\n")
    assert json.loads(line) == {"at": "2024-05-01T12:00:00.500000Z", "node": "n1", "source": "run:r1",
                                "level": "info", "stream": "stdout", "text": "pulling"}


def test_read_back_gives_the_records_as_appended(store: LogStore) -> None:
    records = [rec(1, "ünïcode \"quoted\" \\ back\tslash"), rec(2, "b", level="error", stream="stderr")]
    store.append(records)
    assert store.query(LogFilter()) == records


def test_nothing_stored_answers_nothing(store: LogStore) -> None:
    assert store.query(LogFilter()) == []
    assert store.query(LogFilter(node="n9")) == []


def test_a_line_cut_short_by_a_crash_is_ended_before_the_next_append(store: LogStore) -> None:
    store.append([rec(1, "a")])
    path = store.root / "n1" / "run-r1.log"
    with path.open("ab") as f:
        f.write(b'{"at":"2024-05-01T12:00:02.000000Z","node":"n1","sou')
    store.append([rec(3, "c")])
    assert texts(store.query(LogFilter())) == ["a", "c"]
    assert store.corrupt_lines == 1


def test_corrupt_lines_are_skipped_and_counted(store: LogStore) -> None:
    store.append([rec(1, "a")])
    path = store.root / "n1" / "run-r1.log"
    with path.open("ab") as f:
        f.write(b"not json\n")
        f.write(b'{"at":"2024-05-01T12:00:02.000000Z","node":"n1"}\n')  # fields missing
        f.write(b'{"at":"yesterday","node":"n1","source":"run:r1","level":"info","stream":"","text":"x"}\n')
        f.write(b'{"at":"2024-05-01T12:00:02Z","node":"n1","source":"run:r1","level":"info","stream":"",'
                b'"text":7}\n')  # text not a string
        f.write(b"\n")
    store.append([rec(3, "c")])
    assert texts(store.query(LogFilter())) == ["a", "c"]
    assert store.corrupt_lines == 4


def test_a_line_in_another_json_layout_is_still_read(store: LogStore) -> None:
    path = store.root / "n1" / "agent.log"
    path.parent.mkdir(parents=True)
    path.write_text('{"text": "hand written", "node": "n1", "source": "agent", "level": "info", "stream": "",'
                    ' "at": "2024-05-01T12:00:01+00:00"}\n')
    store.append([rec(2, "b", source="agent")])
    assert texts(store.query(LogFilter(since=T0, until=T0 + timedelta(seconds=1)))) == ["hand written"]
    assert texts(store.query(LogFilter())) == ["hand written", "b"]
    assert texts(store.query(LogFilter(q="^hand", regex=True))) == ["hand written"]


# --- rotation and retention -----------------------------------------------------------


def line_size(store: LogStore) -> int:
    probe = LogStore(store.root.parent / "probe")
    probe.append([rec(0, "x" * 50)])
    return (probe.root / "n1" / "run-r1.log").stat().st_size


def test_a_file_is_rotated_before_it_would_pass_max_bytes(tmp_path: Path) -> None:
    store = LogStore(tmp_path / "logs", keep=5)
    size = line_size(store)
    store.max_bytes = 4 * size  # four lines per file
    store.append([rec(i, "x" * 50) for i in range(10)])
    node_dir = store.root / "n1"
    assert sorted(p.name for p in node_dir.iterdir()) == ["run-r1.log", "run-r1.log.1", "run-r1.log.2"]
    assert (node_dir / "run-r1.log.2").stat().st_size == 4 * size
    assert (node_dir / "run-r1.log.1").stat().st_size == 4 * size
    assert (node_dir / "run-r1.log").stat().st_size == 2 * size
    assert [r.at for r in store.query(LogFilter())] == [rec(i).at for i in range(10)]


def test_rotation_across_appends_keeps_only_keep_rotated_files(tmp_path: Path) -> None:
    store = LogStore(tmp_path / "logs", keep=2)
    size = line_size(store)
    store.max_bytes = 3 * size
    for i in range(20):  # one line per append
        store.append([rec(i, "x" * 50)])
    node_dir = store.root / "n1"
    assert sorted(p.name for p in node_dir.iterdir()) == ["run-r1.log", "run-r1.log.1", "run-r1.log.2"]
    assert [r.at for r in store.query(LogFilter())] == [rec(i).at for i in range(12, 20)]


def test_keep_zero_keeps_only_the_current_file(tmp_path: Path) -> None:
    store = LogStore(tmp_path / "logs", keep=0)
    store.max_bytes = 2 * line_size(store)
    store.append([rec(i, "x" * 50) for i in range(5)])
    assert [p.name for p in (store.root / "n1").iterdir()] == ["run-r1.log"]
    assert len(store.query(LogFilter())) == 1


def test_a_line_longer_than_max_bytes_gets_a_file_to_itself(tmp_path: Path) -> None:
    store = LogStore(tmp_path / "logs", max_bytes=100)
    store.append([rec(1, "a"), rec(2, "y" * 500), rec(3, "c")])
    assert texts(store.query(LogFilter())) == ["a", "y" * 500, "c"]
    assert len(list((store.root / "n1").iterdir())) == 3


def test_sweep_deletes_files_whose_newest_entry_is_past_retention(tmp_path: Path) -> None:
    store = LogStore(tmp_path / "logs", retention=timedelta(days=7))
    store.max_bytes = 2 * line_size(store)
    store.append([rec(i, "x" * 50) for i in range(4)])  # run-r1.log.1: 0, 1; run-r1.log: 2, 3
    store.append([rec(0, "old", node="n2", source="agent")])
    store.append([rec(86400 * 3, "new", source="instance:i1")])
    deleted = store.sweep(now=T0 + timedelta(days=7, seconds=2.5))
    assert deleted == 2  # run-r1.log.1 and n2's agent.log; n2's directory goes too
    assert sorted(p.name for p in (store.root / "n1").iterdir()) == ["instance-i1.log", "run-r1.log"]
    assert not (store.root / "n2").exists()
    assert store.sweep(now=T0 + timedelta(days=30)) == 2
    assert store.query(LogFilter()) == []


def test_sweep_uses_the_files_mtime_when_its_last_line_is_unreadable(tmp_path: Path) -> None:
    store = LogStore(tmp_path / "logs")
    path = store.root / "n1" / "agent.log"
    path.parent.mkdir(parents=True)
    path.write_bytes(b"garbage\n")
    old = (T0 - timedelta(days=8)).timestamp()
    os.utime(path, (old, old))
    assert store.sweep(now=T0) == 1


# --- filters -------------------------------------------------------------------------


@pytest.fixture
def filled(store: LogStore) -> LogStore:
    store.append([
        rec(1, "agent starting", source="agent", level="debug"),
        rec(2, "pull image game:1", source="run:r1"),
        rec(3, "listening on 8080", source="instance:i1", stream="stdout"),
        rec(4, "WARN disk 91%", source="instance:i1", stream="stderr", level="warning"),
        rec(5, "pull failed: 404", source="run:r2", level="error"),
        rec(6, "other node", node="n2", source="agent"),
    ])
    return store


@pytest.mark.parametrize(("flt", "expected"), [
    (LogFilter(node="n1"), ["agent starting", "pull image game:1", "listening on 8080", "WARN disk 91%",
                            "pull failed: 404"]),
    (LogFilter(node="n2"), ["other node"]),
    (LogFilter(instance="i1"), ["listening on 8080", "WARN disk 91%"]),
    (LogFilter(run="r2"), ["pull failed: 404"]),
    (LogFilter(instance="i1", run="r1"), ["pull image game:1", "listening on 8080", "WARN disk 91%"]),
    (LogFilter(since=T0 + timedelta(seconds=2), until=T0 + timedelta(seconds=4)),
     ["pull image game:1", "listening on 8080", "WARN disk 91%"]),
    (LogFilter(since=datetime(2024, 5, 1, 12, 0, 5)), ["pull failed: 404", "other node"]),  # naive: UTC
    (LogFilter(until=datetime(2024, 5, 1, 14, 0, 1, tzinfo=timezone(timedelta(hours=2)))), ["agent starting"]),
    (LogFilter(q="pull"), ["pull image game:1", "pull failed: 404"]),
    (LogFilter(q="Pull"), []),
    (LogFilter(q='"'), []),
    (LogFilter(q="pull .* \\d{3}$", regex=True), ["pull failed: 404"]),
    (LogFilter(q="(?i)warn", regex=True), ["WARN disk 91%"]),
    (LogFilter(level="warning"), ["WARN disk 91%", "pull failed: 404"]),
    (LogFilter(level="ERROR"), ["pull failed: 404"]),
    (LogFilter(level="warn", node="n1", instance="i1"), ["WARN disk 91%"]),
    (LogFilter(level="debug"), ["agent starting", "pull image game:1", "listening on 8080", "WARN disk 91%",
                                "pull failed: 404", "other node"]),
    (LogFilter(node="n1", run="nope"), []),
])
def test_filters(filled: LogStore, flt: LogFilter, expected: list[str]) -> None:
    assert texts(filled.query(flt)) == expected


def test_substring_with_json_escaped_characters_matches_the_text(store: LogStore) -> None:
    store.append([rec(1, 'say "hi"\\now'), rec(2, "say hi")])
    assert texts(store.query(LogFilter(q='"hi"\\'))) == ['say "hi"\\now']
    assert texts(store.query(LogFilter(q="node"))) == []  # a field name is not the text
    assert texts(store.query(LogFilter(q='^say "hi"\\\\n', regex=True))) == ['say "hi"\\now']
    assert texts(store.query(LogFilter(q="source", regex=True))) == []


@pytest.mark.parametrize(("flt", "field"), [
    (LogFilter(q="(unclosed", regex=True), "q"),
    (LogFilter(level="loud"), "level"),
    (LogFilter(node="../etc"), "node"),
    (LogFilter(instance="a/b"), "instance"),
    (LogFilter(run=".hidden"), "run"),
    (LogFilter(limit=0), "limit"),
])
def test_bad_filters_are_invalid_input_naming_the_field(store: LogStore, flt: LogFilter, field: str) -> None:
    with pytest.raises(InvalidInput) as exc:
        store.query(flt)
    assert field_paths(exc) == [field]


def test_an_unclosed_paren_is_a_plain_substring_without_regex(store: LogStore) -> None:
    store.append([rec(1, "f(unclosed")])
    assert texts(store.query(LogFilter(q="(unclosed"))) == ["f(unclosed"]


@pytest.mark.parametrize(("node", "source"), [
    ("../x", "agent"), ("n1/..", "agent"), ("", "agent"), ("n1", "run:../../etc"), ("n1", "instance:"),
    ("n1", "run"), ("n1", "other:x"), ("n1", "run:a/b"),
])
def test_path_traversal_is_refused_on_append(store: LogStore, node: str, source: str) -> None:
    with pytest.raises(InvalidInput):
        store.append([rec(1, node=node, source=source)])
    assert not store.root.exists()


def test_files_not_named_like_logs_are_not_read(store: LogStore) -> None:
    store.append([rec(1, "a")])
    (store.root / "n1" / "notes.txt").write_text("x\n")
    (store.root / ".hidden").mkdir()
    (store.root / ".hidden" / "agent.log").write_text("x\n")
    assert texts(store.query(LogFilter())) == ["a"]


# --- limit and order -------------------------------------------------------------------


def test_limit_answers_the_last_matches_in_time_order(store: LogStore) -> None:
    store.append([rec(i, f"l{i}") for i in range(50)])
    assert texts(store.query(LogFilter(limit=3))) == ["l47", "l48", "l49"]
    assert texts(store.query(LogFilter(limit=3, q="l1"))) == ["l17", "l18", "l19"]
    assert texts(store.query(LogFilter(limit=2, until=T0 + timedelta(seconds=10)))) == ["l9", "l10"]


def test_sources_are_merged_by_time_across_rotated_files(tmp_path: Path) -> None:
    store = LogStore(tmp_path / "logs")
    store.max_bytes = 3 * line_size(store)
    store.append([rec(i, "x" * 50, source="run:r1") for i in range(0, 30, 3)])
    store.append([rec(i, "x" * 50, source="instance:i1") for i in range(1, 30, 3)])
    store.append([rec(i, "x" * 50, node="n2", source="agent") for i in range(2, 30, 3)])
    got = store.query(LogFilter())
    assert [r.at for r in got] == [rec(i).at for i in range(30)]
    assert [r.source for r in got[:3]] == ["run:r1", "instance:i1", "agent"]
    assert [r.at for r in store.query(LogFilter(limit=4))] == [rec(i).at for i in range(26, 30)]


def test_lines_written_out_of_time_order_are_answered_in_time_order(store: LogStore) -> None:
    store.append([rec(5, "e"), rec(1, "a"), rec(3, "c")])
    store.append([rec(2, "b"), rec(4, "d")])
    assert texts(store.query(LogFilter())) == ["a", "b", "c", "d", "e"]
    assert texts(store.query(LogFilter(limit=2))) == ["d", "e"]


def test_equal_times_keep_the_order_they_were_written_in(tmp_path: Path) -> None:
    store = LogStore(tmp_path / "logs")
    store.max_bytes = 3 * line_size(store)
    store.append([rec(1, f"{i:050d}") for i in range(7)])
    assert texts(store.query(LogFilter())) == [f"{i:050d}" for i in range(7)]
    assert texts(store.query(LogFilter(limit=2))) == [f"{i:050d}" for i in (5, 6)]


# --- property ------------------------------------------------------------------------

entries = st.lists(
    st.tuples(st.integers(0, 10_000), st.sampled_from(["agent", "run:r1", "instance:i1"]),
              st.text(max_size=12)),
    max_size=40,
)


@settings(max_examples=60, deadline=None)
@given(entries=entries, since=st.integers(0, 10_000), span=st.integers(0, 10_000), rotate=st.booleans())
def test_a_time_range_answers_exactly_the_entries_appended_in_it(
    entries: list[tuple[int, str, str]], since: int, span: int, rotate: bool
) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        store = LogStore(Path(tmp), max_bytes=300 if rotate else 1 << 20, keep=1000)
        records = [rec(ms / 1000, text, source=source) for ms, source, text in entries]
        store.append(records)
        lo, hi = T0 + timedelta(milliseconds=since), T0 + timedelta(milliseconds=since + span)
        got = store.query(LogFilter(since=lo, until=hi, limit=10_000))
    expected = [r for r in records if lo <= r.at <= hi]
    assert [r.at for r in got] == sorted(r.at for r in expected)
    assert sorted(got, key=_key) == sorted(expected, key=_key)


def _key(r: LogRecord) -> tuple[Any, ...]:
    return (r.at, r.source, r.text)
