"""NodeStore and NodeHistoryStore persist what they are given."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from console.errors import Conflict, NotFound
from console.models import GameNode, NodeHistory, NodeStatus, NodeType, StatusChange
from console.store import NodeHistoryStore, NodeStore

MakeNode = Callable[..., GameNode]
Reopen = Callable[[Any], Any]

T1 = datetime(2024, 7, 1, 9, 0, tzinfo=UTC)


def test_crud(node_store: NodeStore, make_node: MakeNode, reopen: Reopen) -> None:
    node = make_node("n1", model="Dell R750", location="eu-west", hardware={"cpu": {"cores": 32}})
    node_store.add(node)
    assert reopen(node_store).get("n1") == node

    renamed = node.model_copy(update={"name": "Renamed", "updated_at": T1})
    node_store.update(renamed)
    assert reopen(node_store).get("n1") == renamed

    node_store.delete("n1")
    again = reopen(node_store)
    assert "n1" not in again
    with pytest.raises(NotFound, match="node 'n1' not found"):
        again.get("n1")


def test_duplicate_node_is_a_conflict(node_store: NodeStore, make_node: MakeNode) -> None:
    node_store.add(make_node("n1"))
    with pytest.raises(Conflict, match="node 'n1' already exists"):
        node_store.add(make_node("n1"))


@pytest.mark.parametrize("status", list(NodeStatus))
def test_a_status_change_is_persisted(
    node_store: NodeStore, make_node: MakeNode, reopen: Reopen, status: NodeStatus
) -> None:
    start = NodeStatus.MAINTENANCE if status != NodeStatus.MAINTENANCE else NodeStatus.OFFLINE
    node_store.add(make_node("n1", status=start))
    node_store.mutate("n1", lambda n: n.model_copy(update={"status": status, "updated_at": T1}))
    back = reopen(node_store).get("n1")
    assert back.status == status
    assert isinstance(back.status, NodeStatus)
    assert back.updated_at == T1


def test_online_and_last_online_are_persisted(
    node_store: NodeStore, make_node: MakeNode, reopen: Reopen
) -> None:
    node_store.add(make_node("n1"))
    node_store.mutate("n1", lambda n: n.model_copy(update={"online": True, "last_online": T1}))
    back = reopen(node_store).get("n1")
    assert (back.online, back.last_online) == (True, T1)
    node_store.mutate("n1", lambda n: n.model_copy(update={"online": False}))
    assert reopen(node_store).get("n1").online is False


@pytest.fixture
def fleet(node_store: NodeStore, make_node: MakeNode, reopen: Reopen) -> NodeStore:
    """A small fleet, loaded back from disk."""
    fleet = [  # id, type, status, location, labels
        ("a1", "physical", "online", "eu", {"gpu": "a100"}),
        ("a2", "virtual", "online", "us", {"gpu": "t4", "spot": "1"}),
        ("b1", "container", "offline", "eu", {}),
        ("b2", "physical", "maintenance", "eu", {"spot": "y"}),
        ("c1", "virtual", "ready", "", {"gpu": "a100"}),
    ]
    for id, type, status, location, labels in fleet:
        node_store.add(make_node(id, type=type, status=status, location=location, labels=labels))
    loaded: NodeStore = reopen(node_store)
    return loaded


@pytest.mark.parametrize(
    ("predicate", "ids"),
    [
        (lambda n: n.status == NodeStatus.ONLINE, ["a1", "a2"]),
        (lambda n: n.status in (NodeStatus.OFFLINE, NodeStatus.MAINTENANCE), ["b1", "b2"]),
        (lambda n: n.type == NodeType.PHYSICAL, ["a1", "b2"]),
        (lambda n: n.type == "virtual", ["a2", "c1"]),
        (lambda n: n.location == "eu", ["a1", "b1", "b2"]),
        (lambda n: n.labels.get("gpu") == "a100", ["a1", "c1"]),
        (lambda n: "spot" in n.labels, ["a2", "b2"]),
        (lambda n: n.location == "eu" and n.labels.get("spot") == "y", ["b2"]),
        (lambda n: n.location == "mars", []),
    ],
    ids=["online", "offline-maint", "physical", "virtual", "eu", "gpu-a100", "spot", "eu-spot", "none"],
)
def test_filter_by_status_type_location_labels(
    fleet: NodeStore, predicate: Callable[[GameNode], bool], ids: list[str]
) -> None:
    assert [n.id for n in fleet.filter(predicate)] == ids


def test_labels_added_and_removed_are_persisted(
    node_store: NodeStore, make_node: MakeNode, reopen: Reopen
) -> None:
    def add(node: GameNode) -> GameNode:
        return node.model_copy(update={"labels": {**node.labels, "zone/rack": "r-7", "new": ""}})

    def remove(node: GameNode) -> GameNode:
        return node.model_copy(update={"labels": {k: v for k, v in node.labels.items() if k != "drop"}})

    node_store.add(make_node("n1", labels={"keep": "1", "drop": "x"}))
    node_store.mutate("n1", add)
    assert reopen(node_store).get("n1").labels == {"keep": "1", "drop": "x", "zone/rack": "r-7", "new": ""}

    node_store.mutate("n1", remove)
    assert reopen(node_store).get("n1").labels == {"keep": "1", "zone/rack": "r-7", "new": ""}

    node_store.mutate("n1", lambda n: n.model_copy(update={"labels": {}}))
    assert reopen(node_store).get("n1").labels == {}


def test_reported_resources_and_metrics_are_persisted(
    node_store: NodeStore, make_node: MakeNode, reopen: Reopen
) -> None:
    node_store.add(make_node("n1"))
    resources = {"cpu": {"used": 3.5, "total": 32}, "memory_mb": {"used": 2048, "total": 65536}, "gpu": []}
    metrics = {"load1": 0.25, "disks": {"/": {"used_pct": 41.5}}, "sampled_at": "2024-07-01T09:00:00Z"}
    node_store.mutate("n1", lambda n: n.model_copy(update={"resources": resources, "metrics": metrics}))
    back = reopen(node_store).get("n1")
    assert (back.resources, back.metrics) == (resources, metrics)


def test_a_node_file_written_by_a_go_client_loads(tmp_path: Path) -> None:
    root = tmp_path / "nodes"
    root.mkdir()
    (root / "n1.yaml").write_text(
        "id: n1\nname: From Go\ntype: container\nhardware: null\nnetwork: null\nlabels: null\n"
        "created_at: 2024-01-01T00:00:00Z\n"
    )
    store = NodeStore(root)
    store.load()
    node = store.get("n1")
    assert (node.hardware, node.network, node.labels) == ({}, {}, {})
    assert node.created_at == datetime(2024, 1, 1, tzinfo=UTC)


# --- history ------------------------------------------------------------------


def _change(minutes: int, to: str, frm: str | None = None, reason: str = "") -> StatusChange:
    at = T1 + timedelta(minutes=minutes)
    return StatusChange(at=at, from_status=frm, to_status=to, by="operator", reason=reason)


def test_node_history_is_persisted_in_order(tmp_path: Path, reopen: Reopen) -> None:
    store = NodeHistoryStore(tmp_path / "node-history")
    store.load()
    history = NodeHistory(id="n1", changes=[_change(0, "online")])
    store.add(history)
    store.mutate(
        "n1",
        lambda h: h.model_copy(
            update={"changes": [*h.changes, _change(5, "maintenance", "online", "disk swap — ticket #42")]}
        ),
    )
    back = reopen(store).get("n1")
    steps = [(c.from_status, c.to_status) for c in back.changes]
    assert steps == [(None, "online"), ("online", "maintenance")]
    assert back.changes[1].reason == "disk swap — ticket #42"
    assert back.changes[1].at == T1 + timedelta(minutes=5)


def test_node_history_not_found_names_its_kind(tmp_path: Path) -> None:
    store = NodeHistoryStore(tmp_path / "node-history")
    store.load()
    with pytest.raises(NotFound, match="node history 'n9' not found"):
        store.get("n9")
