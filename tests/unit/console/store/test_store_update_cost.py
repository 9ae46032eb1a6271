"""An update's cost grows with the record, not with the store (DESIGN "Stores").

At N records, changing one may rewrite that record's file and nothing else.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest

import console.store.base as base_module
from console.models import GameNode
from console.store import NodeStore

MakeNode = Callable[..., GameNode]

N = 200

FileState = tuple[int, int, int, int]  # inode, size, mtime_ns, ctime_ns


def _state(root: Path) -> dict[str, FileState]:
    out = {}
    for entry in os.scandir(root):
        st = entry.stat()
        out[entry.name] = (st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)
    return out


@pytest.fixture
def full_store(tmp_path: Path, make_node: MakeNode) -> NodeStore:
    store = NodeStore(tmp_path / "nodes")
    store.load()
    for i in range(N):
        store.add(make_node(f"n{i:04d}", hardware={"slot": i}))
    store.close()  # leaves an index, which an update must not rewrite either
    return store


@pytest.fixture
def writes(monkeypatch: pytest.MonkeyPatch) -> list[tuple[Path, int]]:
    """Every `write_atomic` the store makes: (path, bytes)."""
    calls: list[tuple[Path, int]] = []
    real = base_module.write_atomic

    def counting(path: Path, data: bytes) -> None:
        calls.append((path, len(data)))
        real(path, data)

    monkeypatch.setattr(base_module, "write_atomic", counting)
    return calls


UPDATES: dict[str, Callable[[NodeStore, GameNode], object]] = {
    "update": lambda store, new: store.update(new),
    "put": lambda store, new: store.put(new),
    "mutate": lambda store, new: store.mutate(new.id, lambda _: new),
}


@pytest.mark.parametrize("how", list(UPDATES))
def test_an_update_rewrites_only_that_records_file(
    full_store: NodeStore, writes: list[tuple[Path, int]], how: str
) -> None:
    root = full_store.root
    before = _state(root)
    assert len(before) == N + 1  # the records and the index
    target = "n0150"
    new = full_store.get(target).model_copy(update={"name": "renamed"})

    UPDATES[how](full_store, new)

    after = _state(root)
    assert set(after) == set(before)
    changed = {name for name in before if after[name] != before[name]}
    assert changed == {f"{target}.yaml"}
    assert after[f"{target}.yaml"][0] != before[f"{target}.yaml"][0]  # a new file renamed over the old
    assert writes == [(root / f"{target}.yaml", after[f"{target}.yaml"][1])]


def test_an_add_and_a_delete_touch_only_their_own_file(
    full_store: NodeStore, make_node: MakeNode, writes: list[tuple[Path, int]]
) -> None:
    root = full_store.root
    before = _state(root)
    full_store.add(make_node("new"))
    full_store.delete("n0007")
    after = _state(root)
    assert set(after) == (set(before) - {"n0007.yaml"}) | {"new.yaml"}
    assert {name for name in before if name in after and after[name] != before[name]} == set()
    assert [path.name for path, _ in writes] == ["new.yaml"]


def test_the_bytes_an_update_writes_do_not_depend_on_the_store_size(
    tmp_path: Path, make_node: MakeNode, writes: list[tuple[Path, int]]
) -> None:
    record = make_node("same", hardware={"slot": 1})
    written = []
    for size in (1, N):
        store = NodeStore(tmp_path / f"store-{size}")
        store.load()
        for i in range(size - 1):
            store.add(make_node(f"n{i:04d}"))
        store.add(record)
        writes.clear()
        store.update(record.model_copy(update={"name": "renamed"}))
        written.append(list(writes))
    small, big = written
    assert len(small) == len(big) == 1
    assert small[0][1] == big[0][1]
