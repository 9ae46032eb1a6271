"""NodeService: listing, CRUD, the status state machine and its history, labels, online state."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from console.errors import Conflict, InvalidInput, NotFound
from console.models import GameNode, NodeStatus
from console.service import NodeQuery, Services
from console.service.nodes import HISTORY_LIMIT, SORT_FIELDS, TRANSITIONS

OFF, ON, READY, MAINT = NodeStatus.OFFLINE, NodeStatus.ONLINE, NodeStatus.READY, NodeStatus.MAINTENANCE

# The state machine as the module docstring draws it.
DOCUMENTED = {
    OFF: {ON, MAINT},
    ON: {READY, OFF, MAINT},
    READY: {ON, OFF, MAINT},
    MAINT: {OFF, ON, READY},
}

MakeNode = Callable[..., GameNode]


def ids(services: Services, **query: Any) -> list[str]:
    return [n.id for n in services.nodes.list_nodes(NodeQuery(**query)).items]


# --- listing ----------------------------------------------------------------


@pytest.fixture
def fleet(services: Services, make_node: MakeNode, clock: Any) -> Services:
    """Five nodes, created in an order unlike their id order, two of them connected."""
    specs = [
        ("gamma", "Gamma US", "container", "offline", "nyc1", "R650", {"region": "us", "tier": "silver"}),
        (
            "alpha",
            "Alpha EU",
            "physical",
            "online",
            "fra1",
            "R750",
            {"region": "eu", "rack": "r1", "gpu": "", "tier": "gold"},
        ),
        ("delta", "DELTA", "physical", "maintenance", "nyc1", "", {}),
        ("beta", "Beta", "virtual", "ready", "fra1", "KVM", {"region": "eu", "rack": "r3", "spot": ""}),
        ("epsilon", "Epsilon", "virtual", "offline", "", "KVM", {"region": "ap"}),
    ]
    for id, name, type, status, location, model, labels in specs:
        clock.advance(60)
        make_node(id, name=name, type=type, status=status, location=location, model=model, labels=labels)
    clock.advance(60)
    services.nodes.set_online("beta", True)
    clock.advance(60)
    services.nodes.set_online("alpha", True)
    return services


def test_list_without_a_query_gives_every_node_in_id_order(fleet: Services) -> None:
    page = fleet.nodes.list_nodes()

    assert [n.id for n in page.items] == ["alpha", "beta", "delta", "epsilon", "gamma"]
    assert page.total == 5


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ({"status": "online"}, ["alpha"]),
        ({"status": "offline"}, ["epsilon", "gamma"]),
        ({"status": "maintenance"}, ["delta"]),
        ({"type": "physical"}, ["alpha", "delta"]),
        ({"type": "container"}, ["gamma"]),
        ({"location": "nyc1"}, ["delta", "gamma"]),
        ({"location": ""}, ["epsilon"]),
        ({"location": "nyc"}, []),  # location is matched whole
        ({"online": True}, ["alpha", "beta"]),
        ({"online": False}, ["delta", "epsilon", "gamma"]),
        ({"type": "virtual", "online": False}, ["epsilon"]),
        ({"location": "fra1", "status": "ready"}, ["beta"]),
    ],
)
def test_list_filters_by_field(fleet: Services, query: dict[str, Any], expected: list[str]) -> None:
    assert ids(fleet, **query) == expected


@pytest.mark.parametrize(
    ("selector", "expected"),
    [
        ("region=eu", ["alpha", "beta"]),
        ("region=eu,rack!=r3", ["alpha"]),
        ("rack!=r3", ["alpha", "delta", "epsilon", "gamma"]),
        ("gpu", ["alpha"]),
        ("!spot", ["alpha", "delta", "epsilon", "gamma"]),
        ("tier in (gold,silver)", ["alpha", "gamma"]),
        ("region notin (eu)", ["delta", "epsilon", "gamma"]),
        ("region, region notin (eu,us)", ["epsilon"]),
        ("", ["alpha", "beta", "delta", "epsilon", "gamma"]),
    ],
)
def test_list_filters_by_label_selector(fleet: Services, selector: str, expected: list[str]) -> None:
    assert ids(fleet, selector=selector) == expected


def test_a_bad_selector_is_refused_with_its_column(fleet: Services) -> None:
    with pytest.raises(InvalidInput, match="column 3"):
        fleet.nodes.list_nodes(NodeQuery(selector="a,,b"))


@pytest.mark.parametrize(
    ("q", "expected"),
    [
        ("alpha", ["alpha"]),
        ("ALPHA", ["alpha"]),
        ("lph", ["alpha"]),  # part of the id
        ("eu", ["alpha"]),  # part of the name "Alpha EU"
        ("us", ["gamma"]),
        ("ta", ["beta", "delta"]),
        ("Delta", ["delta"]),  # the name is "DELTA"
        ("zeta", []),
        ("", ["alpha", "beta", "delta", "epsilon", "gamma"]),
    ],
)
def test_list_free_text_matches_id_and_name_ignoring_case(
    fleet: Services, q: str, expected: list[str]
) -> None:
    assert ids(fleet, q=q) == expected


@pytest.mark.parametrize(
    ("sort", "expected"),
    [
        ("name", ["alpha", "beta", "delta", "epsilon", "gamma"]),
        ("-id", ["gamma", "epsilon", "delta", "beta", "alpha"]),
        ("created_at", ["gamma", "alpha", "delta", "beta", "epsilon"]),
        ("-created_at", ["epsilon", "beta", "delta", "alpha", "gamma"]),
        ("-status,name", ["beta", "alpha", "epsilon", "gamma", "delta"]),
        ("status,-name", ["delta", "gamma", "epsilon", "alpha", "beta"]),
        ("location,id", ["epsilon", "alpha", "beta", "delta", "gamma"]),
        ("last_online,id", ["delta", "epsilon", "gamma", "beta", "alpha"]),  # never online first
        ("-last_online,id", ["alpha", "beta", "delta", "epsilon", "gamma"]),
        ("-online,-type,id", ["beta", "alpha", "epsilon", "delta", "gamma"]),
    ],
)
def test_list_sorts(fleet: Services, sort: str, expected: list[str]) -> None:
    assert ids(fleet, sort=sort) == expected


def _sort_key(value: Any) -> tuple[int, Any]:
    return (0, 0) if value is None else (1, value)


@pytest.mark.parametrize("descending", [False, True])
@pytest.mark.parametrize("field", sorted(SORT_FIELDS))
def test_list_sorts_by_every_allowed_field(fleet: Services, field: str, descending: bool) -> None:
    items = fleet.nodes.list_nodes(NodeQuery(sort=("-" if descending else "") + field)).items
    keys = [_sort_key(getattr(n, field)) for n in items]

    assert len(items) == 5
    assert keys == sorted(keys, reverse=descending)
    assert len(set(keys)) > 1  # the fleet tells the orders apart


def test_an_unknown_sort_field_is_refused_by_name(fleet: Services) -> None:
    with pytest.raises(InvalidInput, match="unknown field 'colour'"):
        fleet.nodes.list_nodes(NodeQuery(sort="name,-colour"))


@pytest.mark.parametrize(
    ("limit", "offset", "expected"),
    [
        (2, 0, ["alpha", "beta"]),
        (2, 2, ["delta", "epsilon"]),
        (2, 4, ["gamma"]),
        (10, 5, []),
        (None, 3, ["epsilon", "gamma"]),
        (0, 0, []),
    ],
)
def test_list_pages_and_counts_every_match(
    fleet: Services, limit: int | None, offset: int, expected: list[str]
) -> None:
    page = fleet.nodes.list_nodes(NodeQuery(limit=limit, offset=offset))

    assert [n.id for n in page.items] == expected
    assert page.total == 5


def test_the_total_counts_the_filtered_nodes_not_the_page(fleet: Services) -> None:
    page = fleet.nodes.list_nodes(NodeQuery(selector="region", sort="-id", limit=1, offset=1))

    assert [n.id for n in page.items] == ["epsilon"]
    assert page.total == 4


# --- get and create ---------------------------------------------------------


def test_get_returns_the_node_and_refuses_an_unknown_id(services: Services, make_node: MakeNode) -> None:
    node = make_node("n1")

    assert services.nodes.get_node("n1") == node
    with pytest.raises(NotFound, match="node 'nope' not found"):
        services.nodes.get_node("nope")


def test_create_fills_defaults_and_records_the_first_history_entry(services: Services, clock: Any) -> None:
    node = services.nodes.create_node({"id": "n1", "name": "One", "type": "virtual"}, actor="alice")

    assert node.status == OFF
    assert node.online is False
    assert node.last_online is None
    assert node.labels == {} and node.hardware == {}
    assert node.created_at == node.updated_at == clock.now
    assert services.nodes.get_node("n1") == node
    [entry] = services.nodes.status_history("n1")
    assert (entry.from_status, entry.to_status, entry.by, entry.reason, entry.at) == (
        None,
        OFF,
        "alice",
        "created",
        clock.now,
    )


def test_create_refuses_a_duplicate_id(services: Services, make_node: MakeNode) -> None:
    first = make_node("n1", name="first")

    with pytest.raises(Conflict, match="node 'n1' already exists"):
        make_node("n1", name="second")
    assert services.nodes.get_node("n1") == first
    assert len(services.nodes.status_history("n1")) == 1


@pytest.mark.parametrize(
    ("fields", "path"),
    [
        ({"type": "mainframe"}, "type"),
        ({"type": None}, "type"),
        ({"status": "sleeping"}, "status"),
        ({"labels": {"bad key": "x"}}, "labels.bad key (key)"),
        ({"labels": {"region": "not ok"}}, "labels.region"),
        ({"labels": {"region": 3}}, "labels.region"),
        ({"name": ""}, "name"),
        ({"id": "-n1"}, "id"),
        ({"id": "a/b"}, "id"),
        ({"hardware": ["cpu"]}, "hardware"),
        ({"colour": "red"}, "colour"),
    ],
)
def test_create_refuses_bad_fields_naming_their_path(
    services: Services, fields: dict[str, Any], path: str
) -> None:
    data = {"id": "n1", "name": "One", "type": "physical", **fields}

    with pytest.raises(InvalidInput) as info:
        services.nodes.create_node(data)

    assert path in [d.path for d in info.value.details]
    assert f"{path}: " in str(info.value)
    assert len(services.nodes.list_nodes().items) == 0


@pytest.mark.parametrize("status", ["", None])
def test_create_takes_an_empty_status_as_offline(services: Services, status: str | None) -> None:
    node = services.nodes.create_node({"id": "n1", "name": "One", "type": "physical", "status": status})

    assert node.status == OFF


def test_create_takes_null_maps_as_empty(services: Services) -> None:
    node = services.nodes.create_node(
        {
            "id": "n1",
            "name": "One",
            "type": "physical",
            "hardware": None,
            "network": None,
            "resources": None,
            "metrics": None,
            "labels": None,
        }
    )

    assert (node.hardware, node.network, node.resources, node.metrics, node.labels) == ({}, {}, {}, {}, {})


def test_create_ignores_the_fields_the_server_owns(services: Services, clock: Any) -> None:
    long_ago = datetime(2000, 1, 1, tzinfo=UTC)

    node = services.nodes.create_node(
        {
            "id": "n1",
            "name": "One",
            "type": "physical",
            "online": True,
            "last_online": long_ago,
            "created_at": long_ago,
            "updated_at": long_ago,
        }
    )

    assert node.online is False
    assert node.last_online is None
    assert node.created_at == node.updated_at == clock.now


def test_create_may_start_in_any_status(services: Services, make_node: MakeNode) -> None:
    node = make_node("n1", status="ready")

    assert node.status == READY
    [entry] = services.nodes.status_history("n1")
    assert (entry.from_status, entry.to_status) == (None, READY)


# --- update -----------------------------------------------------------------


def test_update_replaces_only_the_given_fields(services: Services, make_node: MakeNode, clock: Any) -> None:
    old = make_node("n1", name="One", location="fra1", labels={"a": "1"}, hardware={"memory_mb": 1024})
    clock.advance(30)

    node = services.nodes.update_node("n1", {"name": "Uno", "labels": {"b": "2"}})

    assert node.name == "Uno"
    assert node.labels == {"b": "2"}  # a given map replaces the old one
    assert (node.location, node.hardware, node.type) == ("fra1", {"memory_mb": 1024}, old.type)
    assert node.created_at == old.created_at
    assert node.updated_at == clock.now
    assert services.nodes.get_node("n1") == node


def test_update_refuses_to_change_the_id(services: Services, make_node: MakeNode) -> None:
    make_node("n1")

    with pytest.raises(InvalidInput, match="id"):
        services.nodes.update_node("n1", {"id": "n2"})
    assert services.nodes.get_node("n1").id == "n1"
    with pytest.raises(NotFound):
        services.nodes.get_node("n2")


def test_update_accepts_the_same_id(services: Services, make_node: MakeNode) -> None:
    make_node("n1")

    assert services.nodes.update_node("n1", {"id": "n1", "name": "renamed"}).name == "renamed"


def test_update_ignores_the_fields_the_server_owns(services: Services, make_node: MakeNode) -> None:
    old = make_node("n1")

    node = services.nodes.update_node("n1", {"online": True, "created_at": datetime(2000, 1, 1, tzinfo=UTC)})

    assert node.online is False
    assert node.created_at == old.created_at


def test_update_refuses_a_bad_field_and_keeps_the_node(services: Services, make_node: MakeNode) -> None:
    old = make_node("n1")

    with pytest.raises(InvalidInput, match=r"labels\.x: label values"):
        services.nodes.update_node("n1", {"name": "new", "labels": {"x": "a b"}})
    assert services.nodes.get_node("n1") == old


def test_update_of_an_unknown_node_is_not_found(services: Services) -> None:
    with pytest.raises(NotFound):
        services.nodes.update_node("ghost", {"name": "x"})


def test_a_status_change_through_update_follows_the_machine_and_is_recorded(
    services: Services, make_node: MakeNode, clock: Any
) -> None:
    make_node("n1")
    clock.advance(5)

    node = services.nodes.update_node("n1", {"status": "online", "location": "fra1"}, actor="bob")

    assert (node.status, node.location) == (ON, "fra1")
    entry = services.nodes.status_history("n1")[-1]
    assert (entry.from_status, entry.to_status, entry.by, entry.at) == (OFF, ON, "bob", clock.now)
    assert entry.reason


def test_an_illegal_status_change_through_update_is_refused(services: Services, make_node: MakeNode) -> None:
    old = make_node("n1")

    with pytest.raises(Conflict, match="cannot go from offline to ready"):
        services.nodes.update_node("n1", {"status": "ready", "name": "changed"})
    assert services.nodes.get_node("n1") == old
    assert len(services.nodes.status_history("n1")) == 1


def test_an_unknown_status_through_update_is_invalid(services: Services, make_node: MakeNode) -> None:
    make_node("n1")

    with pytest.raises(InvalidInput, match="status"):
        services.nodes.update_node("n1", {"status": "sleeping"})


@pytest.mark.parametrize("status", ["", None, "offline"])
def test_update_without_a_status_change_records_nothing(
    services: Services, make_node: MakeNode, status: str | None
) -> None:
    make_node("n1")

    node = services.nodes.update_node("n1", {"status": status, "name": "renamed"})

    assert (node.status, node.name) == (OFF, "renamed")
    assert len(services.nodes.status_history("n1")) == 1


# --- delete -----------------------------------------------------------------


def test_delete_removes_the_node_and_its_history(services: Services, make_node: MakeNode) -> None:
    make_node("n1")
    services.nodes.update_node_status("n1", "online")

    deleted = services.nodes.delete_node("n1")

    assert deleted.id == "n1"
    with pytest.raises(NotFound):
        services.nodes.get_node("n1")
    assert services.nodes.history.find("n1") is None
    make_node("n1")  # the id is free again, with a fresh history
    assert len(services.nodes.status_history("n1")) == 1


def test_delete_of_an_unknown_node_is_not_found(services: Services) -> None:
    with pytest.raises(NotFound):
        services.nodes.delete_node("ghost")


@pytest.mark.parametrize("end", ["stopped", "failed"])
def test_delete_is_refused_while_the_node_has_live_instances(
    services: Services, make_node: MakeNode, make_instance: Callable[..., Any], end: str
) -> None:
    make_node("n1")
    make_node("n2")
    make_instance("n1", id="i1")
    make_instance("n2", id="elsewhere")

    with pytest.raises(Conflict, match=r"1 live instance\(s\): i1"):
        services.nodes.delete_node("n1")
    assert services.nodes.get_node("n1").id == "n1"

    if end == "stopped":
        services.instances.transition("i1", "stopping")
    services.instances.transition("i1", end)
    services.nodes.delete_node("n1")
    with pytest.raises(NotFound):
        services.nodes.get_node("n1")


# --- status machine ---------------------------------------------------------


def test_the_transition_table_is_the_documented_one() -> None:
    assert {k: set(v) for k, v in TRANSITIONS.items()} == DOCUMENTED


LEGAL = [(a, b) for a, b in itertools.permutations(NodeStatus, 2) if b in DOCUMENTED[a]]
ILLEGAL = [(a, b) for a, b in itertools.permutations(NodeStatus, 2) if b not in DOCUMENTED[a]]


@pytest.mark.parametrize(("old", "new"), LEGAL)
def test_every_legal_transition_is_allowed(
    services: Services, make_node: MakeNode, clock: Any, old: NodeStatus, new: NodeStatus
) -> None:
    make_node("n1", status=old)
    clock.advance(10)

    node = services.nodes.update_node_status("n1", new, reason="because", actor="ops")

    assert node.status == new
    assert node.updated_at == clock.now
    assert services.nodes.get_node("n1").status == new
    history = services.nodes.status_history("n1")
    assert len(history) == 2
    assert (history[-1].from_status, history[-1].to_status) == (old, new)


@pytest.mark.parametrize(("old", "new"), ILLEGAL)
def test_every_illegal_transition_is_a_conflict_listing_the_allowed_targets(
    services: Services, make_node: MakeNode, old: NodeStatus, new: NodeStatus
) -> None:
    before = make_node("n1", status=old)

    with pytest.raises(Conflict) as info:
        services.nodes.update_node_status("n1", new, reason="because")

    allowed = ", ".join(sorted(s.value for s in DOCUMENTED[old]))
    assert f"from {old.value} to {new.value}" in str(info.value)
    assert f"can go to: {allowed}" in str(info.value)
    assert services.nodes.get_node("n1") == before
    assert len(services.nodes.status_history("n1")) == 1


def test_there_are_illegal_transitions_to_test() -> None:
    assert (OFF, READY) in ILLEGAL


@pytest.mark.parametrize("status", list(NodeStatus))
def test_setting_the_same_status_changes_nothing(
    services: Services, make_node: MakeNode, clock: Any, status: NodeStatus
) -> None:
    before = make_node("n1", status=status)
    clock.advance(10)

    node = services.nodes.update_node_status("n1", status.value)  # no reason, even for maintenance

    assert node == before
    assert services.nodes.get_node("n1").updated_at == before.updated_at
    assert len(services.nodes.status_history("n1")) == 1


@pytest.mark.parametrize("reason", ["", "   "])
@pytest.mark.parametrize("old", [OFF, ON, READY])
def test_maintenance_needs_a_reason(
    services: Services, make_node: MakeNode, old: NodeStatus, reason: str
) -> None:
    before = make_node("n1", status=old)

    with pytest.raises(InvalidInput, match="reason"):
        services.nodes.update_node_status("n1", MAINT, reason=reason)
    assert services.nodes.get_node("n1") == before
    assert len(services.nodes.status_history("n1")) == 1


@pytest.mark.parametrize("status", ["sleeping", "", "ONLINE", None, 3])
def test_an_unknown_status_is_invalid(services: Services, make_node: MakeNode, status: Any) -> None:
    make_node("n1")

    with pytest.raises(InvalidInput, match="status: must be one of"):
        services.nodes.update_node_status("n1", status)


def test_status_of_an_unknown_node_is_not_found(services: Services) -> None:
    with pytest.raises(NotFound):
        services.nodes.update_node_status("ghost", "online")
    with pytest.raises(NotFound):
        services.nodes.status_history("ghost")


def test_history_records_who_when_and_why_in_order(
    services: Services, make_node: MakeNode, clock: Any
) -> None:
    t0 = clock.now
    services.nodes.create_node({"id": "n1", "name": "One", "type": "physical"}, actor="hub")
    steps = [
        (ON, "agent", "connected"),
        (READY, "alice", "checks passed"),
        (MAINT, "bob", "disk swap"),
        (ON, "bob", "disk swapped"),
        (OFF, "agent", ""),
    ]
    for status, actor, reason in steps:
        clock.advance(60)
        services.nodes.update_node_status("n1", status, reason=reason, actor=actor)

    history = services.nodes.status_history("n1")

    assert [(c.from_status, c.to_status, c.by, c.reason) for c in history] == [
        (None, OFF, "hub", "created"),
        (OFF, ON, "agent", "connected"),
        (ON, READY, "alice", "checks passed"),
        (READY, MAINT, "bob", "disk swap"),
        (MAINT, ON, "bob", "disk swapped"),
        (ON, OFF, "agent", ""),
    ]
    assert [c.at for c in history] == [t0 + timedelta(minutes=m) for m in range(6)]


def test_history_keeps_only_the_newest_changes(services: Services, make_node: MakeNode, clock: Any) -> None:
    make_node("n1")
    changes = HISTORY_LIMIT + 5
    for n in range(changes):
        clock.advance(1)
        services.nodes.update_node_status("n1", ON if n % 2 == 0 else OFF, reason=f"change {n}")

    history = services.nodes.status_history("n1")

    assert len(history) == HISTORY_LIMIT
    assert history[-1].reason == f"change {changes - 1}"
    assert history[0].reason == f"change {changes - HISTORY_LIMIT}"
    assert [c.at for c in history] == sorted(c.at for c in history)


# --- labels and online ------------------------------------------------------


def test_update_labels_sets_and_removes(services: Services, make_node: MakeNode, clock: Any) -> None:
    make_node("n1", labels={"region": "eu", "rack": "r1", "spot": ""})
    clock.advance(5)

    node = services.nodes.update_labels("n1", set={"region": "us", "gpu": "l4"}, remove=["spot", "absent"])

    assert node.labels == {"region": "us", "rack": "r1", "gpu": "l4"}
    assert node.updated_at == clock.now
    assert services.nodes.get_node("n1").labels == node.labels


def test_update_labels_with_nothing_to_do_keeps_the_labels(services: Services, make_node: MakeNode) -> None:
    make_node("n1", labels={"a": "1"})

    assert services.nodes.update_labels("n1").labels == {"a": "1"}


def test_a_label_both_set_and_removed_ends_up_set(services: Services, make_node: MakeNode) -> None:
    make_node("n1", labels={"a": "1"})

    assert services.nodes.update_labels("n1", set={"a": "2"}, remove=["a"]).labels == {"a": "2"}


def test_update_labels_refuses_a_bad_label(services: Services, make_node: MakeNode) -> None:
    before = make_node("n1", labels={"a": "1"})

    with pytest.raises(InvalidInput, match="labels"):
        services.nodes.update_labels("n1", set={"bad key": "x"})
    assert services.nodes.get_node("n1") == before


def test_update_labels_of_an_unknown_node_is_not_found(services: Services) -> None:
    with pytest.raises(NotFound):
        services.nodes.update_labels("ghost", set={"a": "b"})


def test_set_online_writes_only_changes(services: Services, make_node: MakeNode, clock: Any) -> None:
    make_node("n1")

    clock.advance(10)
    connected_at = clock.now
    node = services.nodes.set_online("n1", True)
    assert (node.online, node.last_online, node.updated_at) == (True, connected_at, connected_at)

    clock.advance(10)
    again = services.nodes.set_online("n1", True)
    assert again == node  # no change: last_online and updated_at stay

    clock.advance(10)
    gone = services.nodes.set_online("n1", False)
    assert (gone.online, gone.last_online, gone.updated_at) == (False, clock.now, clock.now)
    assert services.nodes.get_node("n1") == gone


def test_set_online_does_not_touch_the_status_or_its_history(services: Services, make_node: MakeNode) -> None:
    make_node("n1")

    node = services.nodes.set_online("n1", True)

    assert node.status == OFF
    assert len(services.nodes.status_history("n1")) == 1


# --- writers that land in the middle of a change ----------------------------


class _Interleave:
    """A clock that runs `action` once, the first time it is read after being armed.

    The services read the clock between reading a node and writing it back, so this
    is where another writer (the agent stream's `set_online`) can land.
    """

    def __init__(self, clock: Any, action: Callable[[], object]) -> None:
        self.clock, self.action, self.armed = clock, action, False

    def __call__(self) -> datetime:
        if self.armed:
            self.armed = False
            self.action()
        return self.clock()


@pytest.mark.parametrize(
    "change",
    [
        lambda nodes: nodes.update_node_status("n1", "online", reason="up"),
        lambda nodes: nodes.update_node("n1", {"name": "renamed", "status": "online"}),
        lambda nodes: nodes.update_node("n1", {"location": "fra1"}),
    ],
    ids=["update_node_status", "update_node with status", "update_node"],
)
def test_a_change_keeps_what_another_writer_wrote_meanwhile(
    services: Services, make_node: MakeNode, clock: Any, change: Callable[[Any], GameNode]
) -> None:
    make_node("n1")
    interleave = _Interleave(clock, lambda: services.nodes.set_online("n1", True))
    services.nodes.clock = interleave
    interleave.armed = True

    node = change(services.nodes)

    assert interleave.armed is False  # the other writer did land
    assert node.online is True
    assert services.nodes.get_node("n1").online is True
