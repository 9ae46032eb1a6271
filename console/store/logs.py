"""Log lines of nodes, runs and instances: append-only JSON-lines files.

    DATA_DIR/logs/<node_id>/
      agent.log                  the agent's own lines
      run-<run_id>.log           a pipeline run's step output
      instance-<instance_id>.log an instance's container stdout/stderr
      <any of those>.1 … .N      rotated files, .1 the newest

One line per entry, in the order the lines arrived:

    {"at":"2024-05-01T12:30:00.123456Z","node":"n1","source":"run:r1","level":"info","stream":"","text":"..."}

`at` always has this fixed width (UTC, microseconds, `Z`), so time filters
compare bytes before anything is parsed. A file never grows past `max_bytes`
(one line longer than that gets a file to itself): the line that would cross
it renames the file to `.1` (`.1` to `.2`, …; `keep` rotated files are kept).
`sweep()` deletes files whose newest entry is older than `retention`.

Reading merges every selected file (rotated ones too) by time and answers the
last `limit` matches, oldest first: a bounded heap keeps the newest matches
while files are read newest line first, so once it is full an older line is
skipped on its time bytes alone, and the answer is exact even when lines were
written out of time order. A corrupt line (a crash mid-write, a hand edit) is
skipped and counted, never fatal. Ids become file names, so every node, run
and instance id is checked against `ID_PATTERN` first: nothing reaches a path
that could leave the directory.

Thread-safe: one writer (the log service's thread) and any number of readers.
Writes, rotation and deletion hold a lock; a reader holds it only to open one
source's files, and reads those open files up to the sizes they had, so a
rotation during a read neither loses nor repeats a line. Nothing here knows
about gRPC or HTTP.
"""

from __future__ import annotations

import heapq
import json
import logging
import os
import re
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from json.encoder import encode_basestring as _json_str
from pathlib import Path
from typing import BinaryIO

from console.errors import FieldError, InvalidInput
from console.models import ID_PATTERN, utcnow

__all__ = [
    "DEFAULT_LIMIT",
    "LEVELS",
    "MAX_LIMIT",
    "LogFilter",
    "LogMatcher",
    "LogRecord",
    "LogStore",
    "check_id",
    "check_source",
    "level_name",
]

log = logging.getLogger(__name__)

LEVELS: dict[str, int] = {"debug": 10, "info": 20, "warning": 30, "error": 40}
"""The levels, lowest first; a filter's `level` keeps that one and those above it."""
_LEVEL_ALIASES = {"trace": "debug", "warn": "warning", "err": "error", "critical": "error", "fatal": "error"}
DEFAULT_LIMIT = 1000
MAX_LIMIT = 10_000

_ID = re.compile(ID_PATTERN)
_ID_BODY = ID_PATTERN.strip("^$")
_FILE = re.compile(rf"^(?:agent|run-(?P<run>{_ID_BODY})|instance-(?P<inst>{_ID_BODY}))\.log(?:\.(?P<n>[1-9][0-9]*))?$")
_AT_PREFIX = b'{"at":"'
_AT_END = len(_AT_PREFIX) + 27  # "YYYY-MM-DDTHH:MM:SS.ffffffZ"
_JSON_ESCAPED = re.compile(r'["\\\x00-\x1f]')
_TAIL_BYTES = 64 * 1024


@dataclass(frozen=True, slots=True)
class LogRecord:
    """One log line as stored."""

    at: datetime
    node: str
    source: str
    """`agent`, `run:<id>` or `instance:<id>`."""
    level: str
    stream: str
    """`stdout` / `stderr` for container output; empty otherwise."""
    text: str


def check_id(value: str, what: str) -> str:
    """`value` if it is a valid id; otherwise InvalidInput naming the field `what`."""
    if not _ID.fullmatch(value):
        raise InvalidInput("invalid log query", [FieldError(what, f"not a valid id (got {value!r})")])
    return value


def check_source(source: str) -> str:
    """The file stem of a source (`agent`, `run-<id>`, `instance-<id>`); InvalidInput if it is none of those."""
    if source == "agent":
        return "agent"
    kind, sep, ident = source.partition(":")
    if sep and kind in ("run", "instance") and _ID.fullmatch(ident):
        return f"{kind}-{ident}"
    raise InvalidInput("invalid log source", [FieldError("source", f"expected agent, run:<id> or instance:<id> "
                                                                    f"(got {source!r})")])


def level_name(level: str, default: str | None = "info") -> str:
    """The canonical name of `level` (case-insensitive, `warn` → `warning`); unknown: `default` or InvalidInput."""
    if level in LEVELS:
        return level
    name = level.strip().lower()
    name = _LEVEL_ALIASES.get(name, name)
    if name in LEVELS:
        return name
    if default is not None:
        return default
    raise InvalidInput("invalid log query", [FieldError("level", f"expected one of {', '.join(LEVELS)} "
                                                                 f"(got {level!r})")])


def _at_text(at: datetime) -> str:
    """`at` in the stored form: UTC, microseconds, `Z` (naive times are taken as UTC)."""
    if at.tzinfo is not UTC:
        at = at.astimezone(UTC) if at.tzinfo is not None else at.replace(tzinfo=UTC)
    return at.isoformat(timespec="microseconds")[:-6] + "Z"


def _encode(record: LogRecord) -> bytes:
    """One stored line: the keys always in this order, `text` last (see `_raw_text`)."""
    return (f'{{"at":"{_at_text(record.at)}","node":{_json_str(record.node)},"source":{_json_str(record.source)},'
            f'"level":{_json_str(record.level)},"stream":{_json_str(record.stream)},'
            f'"text":{_json_str(record.text)}}}\n').encode("utf-8", "replace")


def _decode(line: bytes) -> LogRecord | None:
    """The record of one stored line; None when it is corrupt."""
    try:
        data = json.loads(line)
        at = datetime.fromisoformat(data["at"])
        fields = [data[k] for k in ("node", "source", "level", "stream", "text")]
    except (ValueError, KeyError, TypeError):
        return None
    if not all(isinstance(f, str) for f in fields):
        return None
    return LogRecord(at if at.tzinfo else at.replace(tzinfo=UTC), *fields)


def _raw_text(line: bytes) -> str | None:
    """The `text` of a line in the stored form (the last key), without parsing the rest; None if unsure."""
    key = line.rfind(b'"text":"')
    if key == -1 or not line.endswith(b'"}'):
        return None
    raw = line[key + 8 : -2]
    try:
        if b"\\" not in raw and b'"' not in raw:
            return raw.decode()
        text = json.loads(b'"' + raw + b'"')  # a bare quote inside makes this fail: not the last key
    except ValueError:
        return None
    return text if isinstance(text, str) else None


def _candidates(data: bytes, needle: bytes | None) -> list[bytes]:
    """The lines of `data`, in order; only those containing `needle` when given (found in the whole buffer)."""
    if needle is None:
        return data.split(b"\n")
    lines = []
    pos = 0
    while (hit := data.find(needle, pos)) != -1:
        start = data.rfind(b"\n", 0, hit) + 1
        end = data.find(b"\n", hit)
        end = len(data) if end == -1 else end
        lines.append(data[start:end])
        pos = end + 1
    return lines


# --- filters -------------------------------------------------------------------


@dataclass(frozen=True)
class LogFilter:
    """What a query keeps. `instance` and `run` select sources: given both, lines of either."""

    node: str | None = None
    instance: str | None = None
    run: str | None = None
    since: datetime | None = None
    """Entries at or after."""
    until: datetime | None = None
    """Entries at or before."""
    q: str | None = None
    """A substring of the text, or a regular expression (`re.search`) when `regex` is set."""
    regex: bool = False
    level: str | None = None
    """The lowest level kept."""
    limit: int = DEFAULT_LIMIT
    """The last `limit` matches (in time order) are answered."""

    def compile(self) -> LogMatcher:
        """The matcher of this filter; InvalidInput (with the field) for a bad id, level, regex or limit."""
        for what in ("node", "instance", "run"):
            value = getattr(self, what)
            if value is not None:
                check_id(value, what)
        if self.limit < 1:
            raise InvalidInput("invalid log query", [FieldError("limit", "must be at least 1")])
        return LogMatcher(self, _pattern(self.q, self.regex), LEVELS[level_name(self.level, None)] if self.level else 0)


def _pattern(q: str | None, regex: bool) -> re.Pattern[str] | None:
    if not q or not regex:
        return None
    try:
        return re.compile(q)
    except re.error as exc:
        raise InvalidInput("invalid log query", [FieldError("q", f"not a valid regular expression: {exc}")]) from None


@dataclass(frozen=True)
class LogMatcher:
    """A compiled `LogFilter`: `matches(record)`, plus cheap tests on a stored line's raw bytes."""

    filter: LogFilter
    pattern: re.Pattern[str] | None
    min_rank: int
    sources: frozenset[str] | None = field(init=False)
    since: datetime | None = field(init=False)
    until: datetime | None = field(init=False)
    since_raw: bytes | None = field(init=False)
    until_raw: bytes | None = field(init=False)
    q_raw: bytes | None = field(init=False)

    def __post_init__(self) -> None:
        f = self.filter
        sources = ({f"instance:{f.instance}"} if f.instance else set()) | ({f"run:{f.run}"} if f.run else set())
        set_ = object.__setattr__
        set_(self, "sources", frozenset(sources) if sources else None)
        for name in ("since", "until"):
            value: datetime | None = getattr(f, name)
            if value is not None and value.tzinfo is None:
                value = value.replace(tzinfo=UTC)  # naive times are UTC
            set_(self, name, value)
            set_(self, f"{name}_raw", _at_text(value).encode() if value else None)
        plain = f.q if f.q and not f.regex and not _JSON_ESCAPED.search(f.q) else None
        set_(self, "q_raw", plain.encode() if plain else None)  # in the line's bytes as-is: a cheap pre-test

    def wants_source(self, source: str) -> bool:
        return self.sources is None or source in self.sources

    def text_may_match(self, line: bytes) -> bool:
        """False when the stored line's text surely fails `q` (read without parsing the line)."""
        q = self.filter.q
        if not q or self.q_raw is not None:  # no q, or already found in the line's bytes
            return True
        text = _raw_text(line)
        if text is None:
            return True
        return self.pattern.search(text) is not None if self.pattern else q in text

    def matches(self, record: LogRecord) -> bool:
        f = self.filter
        if f.node is not None and record.node != f.node:
            return False
        if not self.wants_source(record.source) or LEVELS.get(record.level, 20) < self.min_rank:
            return False
        if (self.since is not None and record.at < self.since) or (self.until is not None and record.at > self.until):
            return False
        if not f.q:
            return True
        return self.pattern.search(record.text) is not None if self.pattern else f.q in record.text


# --- the store -----------------------------------------------------------------


@dataclass(order=True)
class _Hit:
    """A match in the bounded heap: ordered by time, then by where it was written."""

    at: bytes
    where: tuple[str, str, int, int]
    record: LogRecord = field(compare=False)


class _Newest:
    """The newest `limit` matches seen so far (a min-heap)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.heap: list[_Hit] = []

    def older_than_all(self, raw_at: bytes) -> bool:
        """Whether a line at `raw_at` cannot make it in any more (cheap: no parsing)."""
        return len(self.heap) >= self.limit and raw_at < self.heap[0].at

    def offer(self, hit: _Hit) -> None:
        if len(self.heap) < self.limit:
            heapq.heappush(self.heap, hit)
        elif hit > self.heap[0]:
            heapq.heapreplace(self.heap, hit)

    def records(self) -> list[LogRecord]:
        return [hit.record for hit in sorted(self.heap)]


class LogStore:
    """Append-only log files under `root`, rotated at `max_bytes`, `keep` rotated files, kept for `retention`."""

    def __init__(
        self,
        root: Path,
        max_bytes: int = 16 * 1024 * 1024,
        keep: int = 5,
        retention: timedelta = timedelta(days=7),
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.root = Path(root)
        self.max_bytes = max_bytes
        self.keep = keep
        self.retention = retention
        self.clock = clock
        self.corrupt_lines = 0
        """Corrupt lines met by queries so far (each query counts what it reads)."""
        self._lock = threading.Lock()

    # --- writing ---------------------------------------------------------------

    def append(self, records: Iterable[LogRecord]) -> None:
        """Append `records`, each to its node's and source's file, in the order given."""
        groups: dict[tuple[str, str], list[bytes]] = {}
        for record in records:
            groups.setdefault((record.node, record.source), []).append(_encode(record))
        paths = {key: self._path(*key) for key in groups}  # every id checked before anything is written
        with self._lock:
            for key, lines in groups.items():
                self._write(paths[key], lines)

    def _path(self, node: str, source: str) -> Path:
        return self.root / check_id(node, "node") / f"{check_source(source)}.log"

    def _write(self, path: Path, lines: Sequence[bytes]) -> None:
        f = self._open(path)
        try:
            size = f.tell()
            chunk: list[bytes] = []
            for line in lines:
                if size and size + len(line) > self.max_bytes:
                    f.write(b"".join(chunk))
                    f.close()
                    self._rotate(path)
                    f, size, chunk = self._open(path), 0, []
                chunk.append(line)
                size += len(line)
            f.write(b"".join(chunk))
        finally:
            f.close()

    def _open(self, path: Path) -> BinaryIO:
        """`path` for appending; a last line cut short by a crash is ended first, so the next one is whole."""
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o600)
        size = os.fstat(fd).st_size
        if size and os.pread(fd, 1, size - 1) != b"\n":
            os.write(fd, b"\n")
        return os.fdopen(fd, "ab")

    def _rotate(self, path: Path) -> None:
        """`path` → `.1`, `.1` → `.2`, …; the ones past `keep` are deleted."""
        for n, rotated in sorted(_rotated(path), reverse=True):
            if n >= self.keep:
                rotated.unlink(missing_ok=True)
            else:
                os.replace(rotated, path.with_name(f"{path.name}.{n + 1}"))
        if self.keep > 0:
            os.replace(path, path.with_name(f"{path.name}.1"))
        else:
            path.unlink()

    # --- retention --------------------------------------------------------------

    def sweep(self, now: datetime | None = None) -> int:
        """Delete files whose newest entry is older than `retention`; how many were deleted."""
        cutoff = (now or self.clock()) - self.retention
        deleted = 0
        for node_dir in self._node_dirs(None):
            for path in sorted(node_dir.iterdir()):
                if _FILE.match(path.name) and _newest(path) < cutoff:
                    with self._lock:
                        path.unlink(missing_ok=True)
                    deleted += 1
            with self._lock:
                if not any(node_dir.iterdir()):
                    node_dir.rmdir()
        return deleted

    # --- reading ---------------------------------------------------------------

    def query(self, flt: LogFilter) -> list[LogRecord]:
        """The last `flt.limit` entries matching `flt`, oldest first (ties: in the order they were written)."""
        matcher = flt.compile()
        newest = _Newest(flt.limit)
        corrupt = 0
        for node_dir in self._node_dirs(flt.node):
            for source, paths in self._sources(node_dir, matcher):
                corrupt += self._scan(node_dir.name, source, paths, matcher, newest)
        if corrupt:
            self.corrupt_lines += corrupt
            log.warning("log query skipped %d corrupt line(s) under %s", corrupt, self.root)
        return newest.records()

    def _node_dirs(self, node: str | None) -> list[Path]:
        if node is not None:
            path = self.root / check_id(node, "node")
            return [path] if path.is_dir() else []
        if not self.root.is_dir():
            return []
        return sorted(p for p in self.root.iterdir() if _ID.fullmatch(p.name) and p.is_dir())

    def _sources(self, node_dir: Path, matcher: LogMatcher) -> Iterator[tuple[str, list[tuple[int, Path]]]]:
        """(source, [(rotation, path)]) for each selected source in `node_dir`, newest file first."""
        found: dict[str, list[tuple[int, Path]]] = {}
        for path in node_dir.iterdir():
            m = _FILE.match(path.name)
            if m is None:
                continue
            source = f"run:{m['run']}" if m["run"] else f"instance:{m['inst']}" if m["inst"] else "agent"
            if matcher.wants_source(source):
                found.setdefault(source, []).append((int(m["n"] or 0), path))
        for source in sorted(found):
            yield source, sorted(found[source])

    def _scan(self, node: str, source: str, paths: list[tuple[int, Path]], matcher: LogMatcher,
              newest: _Newest) -> int:
        """Offer one source's matches to `newest`, newest line first; the corrupt lines met.

        The hot loop: a line's time is compared as bytes, and a line older than
        every match kept so far (once `limit` are kept) is skipped unparsed.
        """
        corrupt = 0
        since, until = matcher.since_raw or b"", matcher.until_raw or b"\xff"
        heap, limit, start, end = newest.heap, newest.limit, len(_AT_PREFIX), _AT_END
        for n, data in self._snapshot(paths):
            lines = _candidates(data, matcher.q_raw)
            for i in range(len(lines) - 1, -1, -1):
                line = lines[i]
                raw_at: bytes | None = None
                if line[end : end + 1] == b'"' and line.startswith(_AT_PREFIX):
                    raw_at = line[start:end]
                    if raw_at < since or raw_at > until or (len(heap) >= limit and raw_at < heap[0].at):
                        continue
                elif not line:
                    continue
                if not matcher.text_may_match(line):
                    continue
                record = _decode(line)
                if record is None:
                    corrupt += 1
                elif matcher.matches(record):
                    newest.offer(_Hit(raw_at or _at_text(record.at).encode(), (node, source, -n, i), record))
        return corrupt

    def _snapshot(self, paths: list[tuple[int, Path]]) -> Iterator[tuple[int, bytes]]:
        """Each file's content as it was at one moment (opened together under the lock), newest first."""
        opened: list[tuple[int, BinaryIO, int]] = []
        try:
            with self._lock:
                for n, path in paths:
                    try:
                        reader: BinaryIO = path.open("rb")
                    except FileNotFoundError:  # swept meanwhile
                        continue
                    opened.append((n, reader, os.fstat(reader.fileno()).st_size))
            for n, f, size in opened:
                yield n, f.read(size)
        finally:
            for _, f, _ in opened:
                f.close()


def _rotated(path: Path) -> list[tuple[int, Path]]:
    prefix = path.name + "."
    return [(int(p.name[len(prefix):]), p) for p in path.parent.glob(prefix + "*")
            if p.name[len(prefix):].isdigit()]


def _newest(path: Path) -> datetime:
    """When the newest entry of `path` was logged (its last line; the file's mtime if that is unreadable)."""
    try:
        with path.open("rb") as f:
            size = os.fstat(f.fileno()).st_size
            f.seek(max(0, size - _TAIL_BYTES))
            lines = f.read().rstrip(b"\n").split(b"\n")
            mtime = os.fstat(f.fileno()).st_mtime
    except FileNotFoundError:
        return datetime.max.replace(tzinfo=UTC)
    record = _decode(lines[-1]) if lines else None
    return record.at if record is not None else datetime.fromtimestamp(mtime, UTC)
