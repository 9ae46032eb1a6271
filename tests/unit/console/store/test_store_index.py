"""The parse cache `.index.json`: a shortcut for load(), never a second truth."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import console.store.base as base_module
from console.models import GameNode
from console.store import NodeStore

MakeNode = Callable[..., GameNode]
INDEX = ".index.json"


@pytest.fixture
def parses(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The names of the files each load() parses from YAML."""
    names: list[str] = []
    real = NodeStore._parse

    def counting(self: NodeStore, text: bytes, path: Path, id: str) -> GameNode:
        names.append(path.name)
        return real(self, text, path, id)

    monkeypatch.setattr(NodeStore, "_parse", counting)
    return names


@pytest.fixture
def closed_store(tmp_path: Path, make_node: MakeNode) -> NodeStore:
    """Five nodes written and the store closed, so an index is on disk."""
    store = NodeStore(tmp_path / "nodes")
    store.load()
    for i in range(5):
        store.add(make_node(f"n{i}", hardware={"slot": i, "nested": {"list": [i, {"x": None}]}}))
    store.close()
    return store


def _fresh(store: NodeStore) -> NodeStore:
    again = NodeStore(store.root)
    again.load()
    return again


def _replace_file(path: Path, text: str) -> None:
    """Write `text` to `path` the way editors do: a new file renamed over the old one."""
    tmp = path.with_name(path.name + ".edit")
    tmp.write_text(text)
    os.replace(tmp, path)


def test_close_writes_the_index(closed_store: NodeStore) -> None:
    data = json.loads((closed_store.root / INDEX).read_bytes())
    assert data["version"] == 2
    assert set(data["records"]) == {f"n{i}.yaml" for i in range(5)}


def test_close_of_a_store_never_loaded_writes_no_index(tmp_path: Path) -> None:
    store = NodeStore(tmp_path / "nodes")
    store.close()
    assert not (tmp_path / "nodes" / INDEX).exists()


def test_a_load_after_close_parses_nothing(closed_store: NodeStore, parses: list[str]) -> None:
    again = _fresh(closed_store)
    assert parses == []
    assert again.list() == closed_store.list()


def test_a_load_after_close_parses_no_yaml_at_all(
    closed_store: NodeStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[str] = []
    real = base_module.parse_yaml

    def counting(text: bytes | str, path: str) -> Any:
        calls.append(path)
        return real(text, path)

    monkeypatch.setattr(base_module, "parse_yaml", counting)
    again = _fresh(closed_store)
    assert calls == []
    assert len(again) == 5


def test_without_an_index_every_file_is_parsed(closed_store: NodeStore, parses: list[str]) -> None:
    (closed_store.root / INDEX).unlink()
    again = _fresh(closed_store)
    assert sorted(parses) == [f"n{i}.yaml" for i in range(5)]
    assert again.list() == closed_store.list()


def test_a_hand_edited_file_is_parsed_again(closed_store: NodeStore, parses: list[str]) -> None:
    path = closed_store.root / "n2.yaml"
    path.write_text(path.read_text().replace("name: node n2", "name: edited by hand, longer"))
    again = _fresh(closed_store)
    assert parses == ["n2.yaml"]
    assert again.get("n2").name == "edited by hand, longer"
    assert again.get("n1") == closed_store.get("n1")


def test_a_same_size_edit_in_a_new_file_is_parsed_again(closed_store: NodeStore, parses: list[str]) -> None:
    path = closed_store.root / "n2.yaml"
    text = path.read_text()
    edited = text.replace("name: node n2", "name: NODE N2")
    assert len(edited) == len(text) and edited != text
    _replace_file(path, edited)
    again = _fresh(closed_store)
    assert parses == ["n2.yaml"]
    assert again.get("n2").name == "NODE N2"


def test_a_same_size_edit_in_place_with_old_times_is_parsed_again(
    closed_store: NodeStore, parses: list[str]
) -> None:
    """Same inode, same size, even the old mtime: only the bytes tell, and they are what counts."""
    path = closed_store.root / "n3.yaml"
    before = path.stat()
    text = path.read_text()
    edited = text.replace("name: node n3", "name: NODE N3")
    with path.open("r+") as f:
        f.write(edited)
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
    again = _fresh(closed_store)
    assert parses == ["n3.yaml"]
    assert again.get("n3").name == "NODE N3"


def test_what_was_parsed_goes_into_the_index_for_next_time(
    closed_store: NodeStore, parses: list[str]
) -> None:
    path = closed_store.root / "n3.yaml"
    path.write_text(path.read_text().replace("name: node n3", "name: changed n3 record"))
    _fresh(closed_store)
    assert parses == ["n3.yaml"]
    parses.clear()
    third = _fresh(closed_store)
    assert parses == []
    assert third.get("n3").name == "changed n3 record"


def test_a_file_added_by_hand_is_loaded(
    closed_store: NodeStore, make_node: MakeNode, parses: list[str]
) -> None:
    src = NodeStore(closed_store.root.parent / "elsewhere")
    src.load()
    src.add(make_node("extra"))
    (closed_store.root / "extra.yaml").write_bytes((src.root / "extra.yaml").read_bytes())
    again = _fresh(closed_store)
    assert parses == ["extra.yaml"]
    assert again.get("extra") == make_node("extra")
    assert len(again) == 6


def test_a_file_removed_by_hand_is_gone_despite_the_index(closed_store: NodeStore) -> None:
    (closed_store.root / "n4.yaml").unlink()
    again = _fresh(closed_store)
    assert "n4" not in again
    assert len(again) == 4


def test_the_index_follows_deletes(closed_store: NodeStore) -> None:
    store = _fresh(closed_store)
    store.delete("n0")
    store.close()
    records = json.loads((store.root / INDEX).read_bytes())["records"]
    assert "n0.yaml" not in records
    assert "n0" not in _fresh(closed_store)


@pytest.mark.parametrize(
    "content",
    [
        b"{not json",
        b"",
        b"[]",
        b'{"version": 99, "records": {}}',
        b'{"version": 2, "records": []}',
        b"\xff\xfe",
    ],
    ids=["truncated", "empty", "list", "other-version", "records-not-a-map", "not-utf8"],
)
def test_a_corrupt_index_is_ignored(closed_store: NodeStore, parses: list[str], content: bytes) -> None:
    (closed_store.root / INDEX).write_bytes(content)
    again = _fresh(closed_store)
    assert len(parses) == 5
    assert again.list() == closed_store.list()


@pytest.mark.parametrize(
    "spoil",
    [
        lambda entry: [entry[0], {**entry[1], "type": "no-such-type"}],
        lambda entry: [entry[0], {**entry[1], "unknown_field": 1}],
        lambda entry: [entry[0], "not a record"],
        lambda entry: [entry[0]],
        lambda entry: None,
    ],
    ids=["bad-enum", "extra-field", "not-a-map", "short", "null"],
)
def test_index_entries_that_do_not_validate_fall_back_to_the_yaml(
    closed_store: NodeStore, parses: list[str], spoil: Callable[[list[Any]], Any]
) -> None:
    path = closed_store.root / INDEX
    data = json.loads(path.read_bytes())
    data["records"] = {name: spoil(entry) for name, entry in data["records"].items()}
    path.write_text(json.dumps(data))
    again = _fresh(closed_store)
    assert sorted(parses) == [f"n{i}.yaml" for i in range(5)]
    assert again.list() == closed_store.list()


def test_a_store_of_many_records_leaves_an_index_on_load(tmp_path: Path, make_node: MakeNode) -> None:
    writer = NodeStore(tmp_path / "nodes")
    writer.load()
    for i in range(120):
        writer.add(make_node(f"n{i:03d}"))
    assert not (writer.root / INDEX).exists()  # never closed: as after a crash
    store = NodeStore(tmp_path / "nodes")
    store.load()  # parses 120 files: worth an index even without close()
    assert len(json.loads((store.root / INDEX).read_bytes())["records"]) == 120
