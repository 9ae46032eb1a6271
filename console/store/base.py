"""The generic YAML store every record kind sits on.

One directory per kind, one YAML file per record (`nodes/<id>.yaml`): an
update rewrites one small file (temp, fsync, rename, fsync dir), so its cost
grows with the record and never with the store. Records live in memory as
frozen models; reads never touch the disk and never wait for a writer.

Writers are serialised per store by a lock held across the disk write and the
in-memory swap, so what a reader sees is always what is on disk. A file that
cannot be read back stops `load()` with its path and line and is left as it
is. Leftover temp files (`.<id>.yaml.tmp-*`) belong to writes that never
returned, so they are removed on load.

Listeners (`subscribe`) hear of every record added, changed or deleted, right
after the write, on the writer's thread and under the store's lock, so they
hear of the changes of one record in the order they happened: a listener must
be quick and must not write to the store (hand the work to a loop or queue).

Parsing YAML is slow (~250 µs a record here), so `close()` leaves an index
(`.index.json`) with each record's parsed data keyed by a digest of its
file's bytes. `load()` still reads every file (cheap), and takes a record from
the index only when the digest matches, parsing the YAML otherwise: the YAML
files stay the truth, edited by hand or not, and the index is only a shortcut.
"""

from __future__ import annotations

import builtins
import hashlib
import json
import logging
import os
import re
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, ClassVar, Generic, TypeVar

from pydantic import BaseModel, ValidationError

from console.errors import AlreadyExists, CorruptData, InvalidInput, NotFound
from console.models import ID_PATTERN
from console.store.yamlio import TEMP_MARK, dump_yaml, fsync_dir, line_of, parse_yaml, write_atomic
from console.validation import field_errors

__all__ = ["YamlStore"]

log = logging.getLogger(__name__)

M = TypeVar("M", bound=BaseModel)

_SUFFIX = ".yaml"
_INDEX = ".index.json"

_INDEX_VERSION = 2

_ID_RE = re.compile(ID_PATTERN)


def _digest(content: bytes) -> str:
    return hashlib.blake2b(content, digest_size=16).hexdigest()


class YamlStore(Generic[M]):
    """Records of one model, one YAML file each, under `root`."""

    kind: ClassVar[str] = "record"
    """What a record is called in messages: `node {id!r} not found`."""
    model: type[M]

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self._records: dict[str, M] = {}
        self._digests: dict[str, str] = {}
        """What each record's file holds (a digest of its bytes), for the index."""
        self._lock = threading.RLock()
        self._loaded = False
        self._listeners: tuple[Callable[[str, M | None], None], ...] = ()

    # --- reading ------------------------------------------------------------

    def __len__(self) -> int:
        return len(self._records)

    def __contains__(self, id: object) -> bool:
        return id in self._records

    def __iter__(self) -> Iterator[M]:
        return iter(list(self._records.values()))

    def list(self) -> list[M]:
        """Every record, in id order."""
        return [record for _, record in sorted(self._records.items(), key=lambda item: item[0])]

    def get(self, id: str) -> M:
        record = self._records.get(id)
        if record is None:
            raise NotFound(self.kind, id)
        return record

    def find(self, id: str) -> M | None:
        return self._records.get(id)

    def filter(self, predicate: Callable[[M], bool]) -> builtins.list[M]:
        """The records for which `predicate` is true, in id order."""
        return [r for r in self.list() if predicate(r)]

    # --- writing ------------------------------------------------------------

    def add(self, record: M) -> M:
        id = self._id(record)
        with self._lock:
            if id in self._records:
                raise AlreadyExists(f"{self.kind} {id!r} already exists")
            self._write(id, record)
            self._notify(id, record)
        return record

    def update(self, record: M) -> M:
        id = self._id(record)
        with self._lock:
            if id not in self._records:
                raise NotFound(self.kind, id)
            self._write(id, record)
            self._notify(id, record)
        return record

    def put(self, record: M) -> M:
        """Add or replace."""
        with self._lock:
            id = self._id(record)
            self._write(id, record)
            self._notify(id, record)
        return record

    def delete(self, id: str) -> M:
        with self._lock:
            record = self.get(id)
            self._path(id).unlink(missing_ok=True)
            fsync_dir(self.root)
            del self._records[id]
            self._digests.pop(id, None)
            self._notify(id, None)
        return record

    def mutate(self, id: str, change: Callable[[M], M]) -> M:
        """Read-modify-write one record under the store's lock.

        When `change` hands back the very record it was given, nothing is written.
        """
        with self._lock:
            old = self.get(id)
            new = change(old)
            if new is old:
                return old
            if self._id(new) != id:
                raise InvalidInput(f"{self.kind} id cannot change ({id!r} → {self._id(new)!r})")
            self._write(id, new)
            self._notify(id, new)
        return new

    # --- listening ----------------------------------------------------------

    def subscribe(self, listener: Callable[[str, M | None], None]) -> Callable[[], None]:
        """Call `listener(id, record_or_None)` after every write or delete; returns the unsubscribe."""
        with self._lock:
            self._listeners = (*self._listeners, listener)

        def unsubscribe() -> None:
            with self._lock:
                self._listeners = tuple(fn for fn in self._listeners if fn is not listener)

        return unsubscribe

    # --- load and save ------------------------------------------------------

    def load(self) -> None:
        """Read every record from disk (again), refusing any that is broken."""
        with self._lock:
            self.root.mkdir(parents=True, exist_ok=True)
            index = self._read_index()
            records: dict[str, M] = {}
            digests: dict[str, str] = {}
            parsed = 0
            for entry in list(os.scandir(self.root)):  # read fully: a broken file must not leak the fd
                name = entry.name
                if TEMP_MARK in name and name.startswith("."):
                    os.unlink(entry.path)  # a write that never returned
                    continue
                if not name.endswith(_SUFFIX) or name.startswith("."):
                    continue
                if not entry.is_file():
                    raise CorruptData(entry.path, f"expected a {self.kind} file, found a directory or other")
                id = name[: -len(_SUFFIX)]
                content = Path(entry.path).read_bytes()
                digest = _digest(content)
                record = self._from_index(index.get(name), digest)
                if record is None:
                    record = self._parse(content, Path(entry.path), id)
                    parsed += 1
                records[id] = record
                digests[id] = digest
            self._records, self._digests = records, digests
            self._loaded = True
            if parsed > 100 or (index and parsed):
                self.write_index()  # the next start skips what was just parsed

    def save(self) -> None:
        """Write every record again (each atomically), then the index."""
        with self._lock:
            for id, record in list(self._records.items()):
                self._write(id, record)
            self.write_index()

    def close(self) -> None:
        """Leave the index behind so the next `load()` is quick."""
        if self._loaded:
            self.write_index()

    def write_index(self) -> None:
        with self._lock:
            entries = {
                id + _SUFFIX: [self._digests[id], r.model_dump(mode="json")]
                for id, r in self._records.items()
                if id in self._digests
            }
            data = json.dumps({"version": _INDEX_VERSION, "records": entries}, separators=(",", ":"))
            write_atomic(self.root / _INDEX, data.encode())

    # --- internals ----------------------------------------------------------

    def _id(self, record: M) -> str:
        id = str(getattr(record, "id"))  # noqa: B009 - every stored model has an id
        if not _ID_RE.fullmatch(id):
            raise InvalidInput(f"{self.kind} id {id!r} is not a valid id")
        return id

    def _notify(self, id: str, record: M | None) -> None:
        for listener in self._listeners:
            try:
                listener(id, record)
            except Exception:  # a listener's bug must not fail a write that is already on disk
                log.exception("%s store listener failed for %r", self.kind, id)

    def _path(self, id: str) -> Path:
        return self.root / f"{id}{_SUFFIX}"

    def _write(self, id: str, record: M) -> None:
        if not self._loaded:
            raise RuntimeError(f"{type(self).__name__}.load() must run before the first write")
        path = self._path(id)
        try:
            data = record.model_dump(mode="json")
        except ValueError as exc:  # e.g. maps nested past pydantic's serialization depth
            raise InvalidInput(f"{self.kind} {id!r} cannot be stored: {exc}") from None
        content = dump_yaml(data).encode()
        write_atomic(path, content)
        self._digests[id] = _digest(content)
        self._records[id] = record

    def _parse(self, text: bytes, path: Path, id: str) -> M:
        data = parse_yaml(text, str(path))
        if not isinstance(data, dict):
            raise CorruptData(str(path), f"expected a mapping of {self.kind} fields, found {type(data).__name__}")
        try:
            record = self.model.model_validate(data)
        except ValidationError as exc:
            first = exc.errors(include_url=False)[0]
            problems = "; ".join(str(e) for e in field_errors(exc))
            raise CorruptData(str(path), f"invalid {self.kind}: {problems}", line_of(text, first["loc"])) from None
        if self._id(record) != id:
            raise CorruptData(str(path), f"id {self._id(record)!r} does not match the file name", line_of(text, ["id"]))
        return record

    def _from_index(self, cached: Any, digest: str) -> M | None:
        if not (isinstance(cached, list) and len(cached) == 2 and cached[0] == digest):
            return None
        try:
            return self.model.model_validate(cached[1])
        except ValidationError:
            return None  # the model changed since the index was written: parse the file

    def _read_index(self) -> dict[str, Any]:
        path = self.root / _INDEX
        try:
            data = json.loads(path.read_bytes())
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as exc:
            log.warning("ignoring unreadable store index %s: %s", path, exc)
            return {}
        if not isinstance(data, dict) or data.get("version") != _INDEX_VERSION:
            return {}
        records = data.get("records")
        return records if isinstance(records, dict) else {}

