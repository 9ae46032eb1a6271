"""The generic YAML store: reading, writing, ids, files on disk, round trips."""

from __future__ import annotations

import random
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
import yaml

from console.errors import Conflict, InvalidInput, NotFound
from console.models import GameNode, NodeStatus
from console.store import NodeStore

MakeNode = Callable[..., GameNode]
Reopen = Callable[[NodeStore], NodeStore]


def _files(root: Path) -> set[str]:
    return {p.name for p in root.iterdir()}


# --- reading and writing in memory -------------------------------------------


def test_load_creates_a_missing_directory_and_finds_nothing(tmp_path: Path) -> None:
    store = NodeStore(tmp_path / "a" / "nodes")
    store.load()
    assert (tmp_path / "a" / "nodes").is_dir()
    assert store.list() == []
    assert len(store) == 0


def test_load_of_an_empty_directory(tmp_path: Path) -> None:
    (tmp_path / "nodes").mkdir()
    store = NodeStore(tmp_path / "nodes")
    store.load()
    assert store.list() == []
    assert store.find("n1") is None


def test_add_then_get_find_contains(node_store: NodeStore, make_node: MakeNode) -> None:
    node = make_node("n1")
    assert node_store.add(node) is node
    assert node_store.get("n1") == node
    assert node_store.find("n1") == node
    assert "n1" in node_store
    assert "n2" not in node_store
    assert len(node_store) == 1


def test_get_of_a_missing_id_raises_not_found_with_kind_and_id(node_store: NodeStore) -> None:
    with pytest.raises(NotFound) as info:
        node_store.get("nope")
    assert str(info.value) == "node 'nope' not found"
    assert (info.value.kind, info.value.id, info.value.code) == ("node", "nope", "not_found")


def test_find_of_a_missing_id_is_none(node_store: NodeStore, make_node: MakeNode) -> None:
    node_store.add(make_node("n1"))
    assert node_store.find("n2") is None


def test_add_of_an_existing_id_raises_conflict_and_keeps_the_first(
    node_store: NodeStore, make_node: MakeNode
) -> None:
    first = make_node("n1", name="first")
    node_store.add(first)
    before = (node_store.root / "n1.yaml").read_bytes()
    with pytest.raises(Conflict) as info:
        node_store.add(make_node("n1", name="second"))
    assert str(info.value) == "node 'n1' already exists"
    assert info.value.code == "conflict"
    assert node_store.get("n1") == first
    assert (node_store.root / "n1.yaml").read_bytes() == before


def test_list_is_in_id_order_whatever_the_insertion_order(node_store: NodeStore, make_node: MakeNode) -> None:
    ids = [f"n{i:03d}" for i in range(50)] + ["A", "Z", "a.b", "a_b", "a-b", "0"]
    shuffled = random.Random(7).sample(ids, len(ids))
    for id in shuffled:
        node_store.add(make_node(id))
    assert [n.id for n in node_store.list()] == sorted(ids)
    assert {n.id for n in node_store} == set(ids)


def test_update_replaces_the_record_in_memory_and_on_disk(
    node_store: NodeStore, make_node: MakeNode, reopen: Reopen
) -> None:
    node_store.add(make_node("n1", name="old"))
    new = make_node("n1", name="new", status=NodeStatus.ONLINE)
    assert node_store.update(new) is new
    assert node_store.get("n1") == new
    assert reopen(node_store).get("n1") == new


def test_update_of_a_missing_id_raises_not_found_and_writes_nothing(
    node_store: NodeStore, make_node: MakeNode
) -> None:
    with pytest.raises(NotFound, match="node 'n1' not found"):
        node_store.update(make_node("n1"))
    assert "n1" not in node_store
    assert _files(node_store.root) == set()


def test_put_adds_then_replaces(node_store: NodeStore, make_node: MakeNode, reopen: Reopen) -> None:
    node_store.put(make_node("n1", name="one"))
    assert node_store.get("n1").name == "one"
    node_store.put(make_node("n1", name="two"))
    assert node_store.get("n1").name == "two"
    assert [n.name for n in reopen(node_store).list()] == ["two"]


def test_delete_removes_the_record_and_its_file(
    node_store: NodeStore, make_node: MakeNode, reopen: Reopen
) -> None:
    node_store.add(make_node("n1"))
    node_store.add(make_node("n2"))
    deleted = node_store.delete("n1")
    assert deleted.id == "n1"
    assert "n1" not in node_store
    assert _files(node_store.root) == {"n2.yaml"}
    assert [n.id for n in reopen(node_store).list()] == ["n2"]


def test_delete_of_a_missing_id_raises_not_found(node_store: NodeStore, make_node: MakeNode) -> None:
    node_store.add(make_node("n1"))
    with pytest.raises(NotFound, match="node 'gone' not found"):
        node_store.delete("gone")
    assert [n.id for n in node_store.list()] == ["n1"]


def test_a_deleted_id_can_be_added_again(node_store: NodeStore, make_node: MakeNode, reopen: Reopen) -> None:
    node_store.add(make_node("n1", name="first"))
    node_store.delete("n1")
    node_store.add(make_node("n1", name="again"))
    assert reopen(node_store).get("n1").name == "again"


def test_filter_returns_matches_in_id_order(node_store: NodeStore, make_node: MakeNode) -> None:
    for id, status in [("c", "online"), ("a", "online"), ("b", "offline"), ("d", "ready")]:
        node_store.add(make_node(id, status=status))
    assert [n.id for n in node_store.filter(lambda n: n.status == NodeStatus.ONLINE)] == ["a", "c"]
    assert node_store.filter(lambda n: False) == []


def test_mutate_applies_the_change_and_persists_it(
    node_store: NodeStore, make_node: MakeNode, reopen: Reopen
) -> None:
    node_store.add(make_node("n1", name="old"))
    seen: list[GameNode] = []

    def change(node: GameNode) -> GameNode:
        seen.append(node)
        return node.model_copy(update={"name": "new"})

    result = node_store.mutate("n1", change)
    assert [n.name for n in seen] == ["old"]
    assert result.name == "new"
    assert node_store.get("n1") == result
    assert reopen(node_store).get("n1") == result


def test_mutate_refuses_an_id_change(node_store: NodeStore, make_node: MakeNode, reopen: Reopen) -> None:
    original = make_node("n1")
    node_store.add(original)
    with pytest.raises(InvalidInput) as info:
        node_store.mutate("n1", lambda n: n.model_copy(update={"id": "n2"}))
    assert "'n1'" in str(info.value) and "'n2'" in str(info.value)
    assert info.value.code == "invalid_input"
    assert node_store.get("n1") == original
    assert "n2" not in node_store
    assert _files(node_store.root) == {"n1.yaml"}
    assert reopen(node_store).list() == [original]


def test_mutate_of_a_missing_id_raises_not_found_without_calling_the_change(node_store: NodeStore) -> None:
    calls: list[GameNode] = []
    with pytest.raises(NotFound):
        node_store.mutate("nope", lambda n: calls.append(n) or n)  # type: ignore[func-returns-value]
    assert calls == []


def test_mutate_whose_change_raises_leaves_the_record(
    node_store: NodeStore, make_node: MakeNode, reopen: Reopen
) -> None:
    original = make_node("n1")
    node_store.add(original)

    def change(node: GameNode) -> GameNode:
        raise ValueError("refused")

    with pytest.raises(ValueError, match="refused"):
        node_store.mutate("n1", change)
    assert node_store.get("n1") == original
    assert reopen(node_store).get("n1") == original


# --- ids ----------------------------------------------------------------------

BAD_IDS = ["../evil", "a/b", "", ".hidden", "-lead", "x" * 129, "sp ace", "abc\n", "a\nb", "nul\x00"]


@pytest.mark.parametrize("bad_id", BAD_IDS, ids=repr)
@pytest.mark.parametrize("op", ["add", "put", "update"])
def test_an_invalid_id_is_refused_and_nothing_is_written(
    tmp_path: Path, node_store: NodeStore, make_node: MakeNode, op: str, bad_id: str
) -> None:
    node_store.add(make_node("ok"))
    before = sorted(str(p) for p in tmp_path.rglob("*"))
    record = make_node("ok").model_copy(update={"id": bad_id})  # skips validation, as a bug might
    with pytest.raises(InvalidInput, match="not a valid id"):
        getattr(node_store, op)(record)
    assert sorted(str(p) for p in tmp_path.rglob("*")) == before
    assert [n.id for n in node_store.list()] == ["ok"]


@pytest.mark.parametrize("good_id", ["a", "A.b_c-d", "0", "x" * 128, "node..1"])
def test_valid_ids_name_their_files(node_store: NodeStore, make_node: MakeNode, good_id: str) -> None:
    node_store.add(make_node(good_id))
    assert (node_store.root / f"{good_id}.yaml").is_file()


# --- files on disk ------------------------------------------------------------


def _rich_node(make_node: MakeNode) -> GameNode:
    return make_node(
        "rich",
        name="Rich node",
        model="Dell R750",
        type="virtual",
        status="maintenance",
        location="eu-west/rack-7",
        hardware={
            "cpu": {"model": "EPYC 7763", "cores": 64, "ghz": 2.45},
            "memory_mb": 262144,
            "gpus": [{"model": "A100", "memory_mb": 81920}, {"model": "A100", "memory_mb": 81920}],
            "disks": [],
            "notes": None,
            "flags": {"numa": True, "smt": False},
        },
        network={"ip": "10.0.0.7", "ports": [27015, 27016], "interfaces": {"eth0": {"mtu": 9000}}},
        labels={"region": "eu", "gpu": "a100", "tier": ""},
        online=True,
        last_online=datetime(2024, 6, 1, 8, 0, 0, 1, tzinfo=timezone(timedelta(hours=2))),
        created_at=datetime(2023, 1, 2, 3, 4, 5, tzinfo=UTC),
        updated_at=datetime(2024, 6, 1, 6, 0, 0, 999999, tzinfo=UTC),
    )


def test_a_fresh_store_reads_back_equal_records(
    node_store: NodeStore, make_node: MakeNode, reopen: Reopen
) -> None:
    rich = _rich_node(make_node)
    plain = make_node("plain")
    node_store.add(rich)
    node_store.add(plain)
    again = reopen(node_store)
    assert again.list() == [plain, rich]
    back = again.get("rich")
    assert back.last_online == rich.last_online
    assert back.last_online is not None and back.last_online.utcoffset() == timedelta(hours=2)
    assert back.updated_at.microsecond == 999999
    assert back.hardware["gpus"][1] == {"model": "A100", "memory_mb": 81920}
    assert back.hardware["flags"] == {"numa": True, "smt": False}
    assert back.hardware["notes"] is None


def test_a_naive_time_is_stored_as_utc(node_store: NodeStore, make_node: MakeNode, reopen: Reopen) -> None:
    node_store.add(make_node("n1", last_online=datetime(2024, 1, 1, 12, 0)))
    back = reopen(node_store).get("n1")
    assert back.last_online == datetime(2024, 1, 1, 12, 0, tzinfo=UTC)


def test_one_plain_yaml_file_per_record_named_by_id(node_store: NodeStore, make_node: MakeNode) -> None:
    rich = _rich_node(make_node)
    node_store.add(rich)
    node_store.add(make_node("n2"))
    assert _files(node_store.root) == {"rich.yaml", "n2.yaml"}
    text = (node_store.root / "rich.yaml").read_text(encoding="utf-8")
    assert "!!" not in text  # no python tags, nothing only PyYAML could read
    data = yaml.safe_load(text)
    assert data == rich.model_dump(mode="json")
    assert data["id"] == "rich"
    assert data["status"] == "maintenance"
    assert data["last_online"] == "2024-06-01T08:00:00.000001+02:00"


def test_leftover_temp_files_are_removed_on_load(
    node_store: NodeStore, make_node: MakeNode, reopen: Reopen
) -> None:
    node = make_node("x")
    node_store.add(node)
    root = node_store.root
    (root / ".x.yaml.tmp-abcd").write_text("id: x\nname: [half a wri")
    (root / ".new.yaml.tmp-0123").write_text("")
    (root / "..index.json.tmp-ffff").write_text("{")
    again = reopen(node_store)
    assert _files(root) == {"x.yaml"}
    assert again.list() == [node]


def test_files_that_are_not_records_are_ignored_and_kept(
    node_store: NodeStore, make_node: MakeNode, reopen: Reopen
) -> None:
    node = make_node("n1")
    node_store.add(node)
    root = node_store.root
    strays = {
        "README.txt": "not yaml: [",
        "n2.yaml.bak": "id: [broken",
        "n3.yml": "id: n3\n",
        ".hidden.yaml": "- not a mapping\n",
        "notes": "",
    }
    for name, text in strays.items():
        (root / name).write_text(text)
    (root / "subdir").mkdir()
    again = reopen(node_store)
    assert again.list() == [node]
    assert _files(root) == {"n1.yaml", "subdir", *strays}
    for name, text in strays.items():
        assert (root / name).read_text() == text


def test_load_replaces_memory_with_what_is_on_disk(node_store: NodeStore, make_node: MakeNode) -> None:
    node_store.add(make_node("n1"))
    node_store.add(make_node("n2"))
    (node_store.root / "n1.yaml").unlink()
    node_store.load()
    assert [n.id for n in node_store.list()] == ["n2"]


def test_save_writes_every_record_back(node_store: NodeStore, make_node: MakeNode, reopen: Reopen) -> None:
    nodes = [make_node(f"n{i}") for i in range(3)]
    for node in nodes:
        node_store.add(node)
    for path in node_store.root.glob("*.yaml"):
        path.unlink()
    node_store.save()
    assert _files(node_store.root) == {"n0.yaml", "n1.yaml", "n2.yaml", ".index.json"}
    assert reopen(node_store).list() == nodes


def test_writes_before_any_load_are_refused_so_nothing_on_disk_is_replaced(
    tmp_path: Path, make_node: MakeNode
) -> None:
    first = NodeStore(tmp_path)
    first.load()
    first.add(make_node("n1", name="on disk"))
    unloaded = NodeStore(tmp_path)
    with pytest.raises(RuntimeError, match=r"load\(\) must run before the first write"):
        unloaded.add(make_node("n1", name="blind write"))
    other = NodeStore(tmp_path)
    other.load()
    assert [n.name for n in other.list()] == ["on disk"]


@pytest.mark.parametrize(
    "fields",
    [
        {"hardware": {"big": "x" * 100_000}},
        {"labels": {f"key-{i}": f"value-{i}" for i in range(100)}},
        {"hardware": {"gpus": [{"slot": i, "uuid": f"GPU-{i:08x}"} for i in range(500)]}},
        {"hardware": {"deep": {"a": {"b": {"c": {"d": {"e": [1, [2, [3, {"f": None}]]]}}}}}}},
    ],
    ids=["100KB-string", "100-labels", "500-list-items", "deep-nesting"],
)
def test_large_records_round_trip(
    node_store: NodeStore, make_node: MakeNode, reopen: Reopen, fields: dict[str, Any]
) -> None:
    node = make_node("big", **fields)
    node_store.add(node)
    assert reopen(node_store).get("big") == node


UNICODE_NAMES = ["Ünïcødé Ŝerver", "服务器一号", "игровой узел", "🎮 arena ⚔️", "مرحبا", "tab\tand\nnewline"]


@pytest.mark.parametrize("name", UNICODE_NAMES)
def test_unicode_names_round_trip(
    node_store: NodeStore, make_node: MakeNode, reopen: Reopen, name: str
) -> None:
    node = make_node("u1", name=name, location=name)
    node_store.add(node)
    assert reopen(node_store).get("u1") == node
    assert yaml.safe_load((node_store.root / "u1.yaml").read_bytes())["name"] == name


def test_unicode_is_written_as_utf8_text(node_store: NodeStore, make_node: MakeNode) -> None:
    node_store.add(make_node("u1", name="服务器 Ŝerver"))  # libyaml escapes characters past the BMP
    assert "name: 服务器 Ŝerver\n" in (node_store.root / "u1.yaml").read_bytes().decode("utf-8")


TRICKY = ["yes", "no", "null", "~", "1.0", "0x1F", "017", "2024-01-01", "2024-01-01T00:00:00Z", "- item",
          "key: value", "#hash", " lead", "trail ", "multi\nline\n", "quote'\"", "", "[1, 2]", "{a: b}",
          "*alias", "&anchor", "!tag", "%percent", "@at", "`tick", "|", ">", "\\", "=", "<<", ".inf", ".nan"]


def test_strings_yaml_would_mistake_for_other_types_round_trip(
    node_store: NodeStore, make_node: MakeNode, reopen: Reopen
) -> None:
    as_values = {f"k{i}": s for i, s in enumerate(TRICKY)}
    as_keys = {s: i for i, s in enumerate(TRICKY)}
    node = make_node("t1", hardware=as_values | as_keys)
    node_store.add(node)
    back = reopen(node_store).get("t1")
    assert back == node
    assert all(isinstance(back.hardware[f"k{i}"], str) for i in range(len(TRICKY)))
