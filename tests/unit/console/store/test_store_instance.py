"""InstanceStore persists what it is given, and finds a node's instances."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest

from console.errors import Conflict, NotFound
from console.models import Instance, InstanceState, PortMapping, Resources
from console.store import InstanceStore

MakeInstance = Callable[..., Instance]
Reopen = Callable[[Any], Any]

T1 = datetime(2024, 7, 1, 9, 0, tzinfo=UTC)
T2 = datetime(2024, 7, 1, 11, 30, 15, 250000, tzinfo=UTC)


def test_crud(instance_store: InstanceStore, make_instance: MakeInstance, reopen: Reopen) -> None:
    inst = make_instance(
        "i1",
        node_id="n1",
        game="cs2",
        game_version="1.4.2",
        platform="steam",
        run_id="run-7",
        ports=[PortMapping(name="game", container_port=27015, protocol="udp")],
        resources=Resources(cpu=2.5, memory_mb=4096, gpu=1),
        params={"map": "de_dust2", "tickrate": 128, "mods": ["a", "b"], "rcon": {"enabled": False}},
    )
    instance_store.add(inst)
    assert reopen(instance_store).get("i1") == inst

    running = inst.model_copy(update={"state": InstanceState.RUNNING, "container_id": "abc123"})
    instance_store.update(running)
    assert reopen(instance_store).get("i1") == running

    instance_store.delete("i1")
    with pytest.raises(NotFound, match="instance 'i1' not found"):
        reopen(instance_store).get("i1")


def test_duplicate_instance_is_a_conflict(instance_store: InstanceStore, make_instance: MakeInstance) -> None:
    instance_store.add(make_instance("i1"))
    with pytest.raises(Conflict, match="instance 'i1' already exists"):
        instance_store.add(make_instance("i1", node_id="n2"))


def test_on_node_returns_that_nodes_instances_in_id_order(
    instance_store: InstanceStore, make_instance: MakeInstance, reopen: Reopen
) -> None:
    for id, node in [("i3", "n1"), ("i1", "n1"), ("i2", "n2"), ("i4", "n1"), ("i5", "n3")]:
        instance_store.add(make_instance(id, node_id=node))
    again = reopen(instance_store)
    for store in (instance_store, again):
        assert [i.id for i in store.on_node("n1")] == ["i1", "i3", "i4"]
        assert [i.id for i in store.on_node("n2")] == ["i2"]
        assert store.on_node("nope") == []


def test_on_node_follows_updates_and_deletes(
    instance_store: InstanceStore, make_instance: MakeInstance
) -> None:
    instance_store.add(make_instance("i1", node_id="n1"))
    instance_store.add(make_instance("i2", node_id="n1"))
    instance_store.mutate("i1", lambda i: i.model_copy(update={"node_id": "n2"}))
    instance_store.delete("i2")
    assert instance_store.on_node("n1") == []
    assert [i.id for i in instance_store.on_node("n2")] == ["i1"]


@pytest.mark.parametrize("state", list(InstanceState))
def test_each_state_is_persisted(
    instance_store: InstanceStore, make_instance: MakeInstance, reopen: Reopen, state: InstanceState
) -> None:
    instance_store.add(make_instance("i1"))
    instance_store.mutate("i1", lambda i: i.model_copy(update={"state": state}))
    back = reopen(instance_store).get("i1")
    assert back.state == state
    assert isinstance(back.state, InstanceState)


def test_lifecycle_fields_are_persisted(
    instance_store: InstanceStore, make_instance: MakeInstance, reopen: Reopen
) -> None:
    instance_store.add(make_instance("i1"))
    started = {"state": InstanceState.RUNNING, "started_at": T1, "updated_at": T1}
    instance_store.mutate("i1", lambda i: i.model_copy(update=started))
    back = reopen(instance_store).get("i1")
    assert (back.state, back.started_at, back.stopped_at) == (InstanceState.RUNNING, T1, None)

    error = "container exited with code 137:\n  out of memory — killed"
    instance_store.mutate(
        "i1",
        lambda i: i.model_copy(update={"state": InstanceState.FAILED, "stopped_at": T2, "error": error}),
    )
    back = reopen(instance_store).get("i1")
    assert (back.state, back.started_at, back.stopped_at, back.error) == (InstanceState.FAILED, T1, T2, error)


def test_resources_and_ports_are_persisted(
    instance_store: InstanceStore, make_instance: MakeInstance, reopen: Reopen
) -> None:
    instance_store.add(make_instance("i1", resources=Resources(cpu=1, memory_mb=512)))
    resources = Resources(cpu=0.25, memory_mb=123456, gpu=2)
    ports = [
        PortMapping(name="game", container_port=7777, host_port=30001, protocol="udp"),
        PortMapping(container_port=27020, host_port=30002),
    ]
    instance_store.mutate("i1", lambda i: i.model_copy(update={"resources": resources, "ports": ports}))
    back = reopen(instance_store).get("i1")
    assert back.resources == resources
    assert back.resources.cpu == 0.25
    assert back.ports == ports
    assert [p.host_port for p in back.ports] == [30001, 30002]
