"""Placement: which nodes can take an instance, in which order, and why the others cannot.

Most tests run on an in-memory fleet (`Fleet`); the concurrency test launches
through `LaunchService` over real stores with a fake run service.
"""

from __future__ import annotations

import builtins
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from launch_fakes import FakeRuns

from console.errors import Conflict, NotFound
from console.models import GameNode, Instance, InstanceState, NodeStatus, Platform, Resources
from console.service import Services, node_capacity
from console.service.launch import LaunchRequest, LaunchService
from console.service.placement import (
    DETAIL_REASONS,
    MESSAGE_REASONS,
    Placement,
    PlacementRequest,
    Policy,
)
from console.service.selector import Selector


def hw(cpu: float, memory_mb: int, gpus: int = 0) -> dict[str, Any]:
    return {"cpu": {"cores": cpu}, "memory_mb": memory_mb, "gpus": [{"model": "L4"}] * gpus}


class Fleet:
    """Nodes and instances in memory, with a set of connected nodes."""

    def __init__(self) -> None:
        self.nodes: dict[str, GameNode] = {}
        self.instances_: builtins.list[Instance] = []
        self.connected: set[str] = set()

    def node(self, id: str, status: str = "ready", cpu: float = 8, memory_mb: int = 16384, gpus: int = 0,
             connected: bool = True, **labels: str) -> Fleet:
        self.nodes[id] = GameNode(id=id, name=id, type="physical", status=NodeStatus(status),
                                  hardware=hw(cpu, memory_mb, gpus), labels=labels)
        if connected:
            self.connected.add(id)
        return self

    def instance(self, node_id: str, cpu: float = 0, memory_mb: int = 0, gpu: int = 0,
                 state: str = "running") -> Fleet:
        self.instances_.append(Instance(
            id=f"i{len(self.instances_)}", node_id=node_id, state=InstanceState(state),
            resources=Resources(cpu=cpu, memory_mb=memory_mb, gpu=gpu),
        ))
        return self

    # NodeView / InstanceView
    def get(self, id: str) -> GameNode:
        if id not in self.nodes:
            raise NotFound("node", id)
        return self.nodes[id]

    def list(self) -> builtins.list[GameNode]:
        return builtins.list(self.nodes.values())

    def placement(self) -> Placement:
        return Placement(self, _Instances(self), self.connected.__contains__)


class _Instances:
    def __init__(self, fleet: Fleet) -> None:
        self.fleet = fleet

    def list(self) -> list[Instance]:
        return list(self.fleet.instances_)

    def on_node(self, node_id: str) -> list[Instance]:
        return [i for i in self.fleet.instances_ if i.node_id == node_id]


def need(cpu: float = 0, memory_mb: int = 0, gpu: int = 0) -> Resources:
    return Resources(cpu=cpu, memory_mb=memory_mb, gpu=gpu)


def platform(**required: str) -> Platform:
    return Platform(id="docker", name="docker", required_labels=required)


def world() -> Fleet:
    """A small fleet with one node of each kind of trouble."""
    return (
        Fleet()
        .node("eu-fra-01", region="eu", cpu=8, memory_mb=16384)
        .node("eu-fra-02", status="maintenance", region="eu")
        .node("eu-ams-01", region="eu", cpu=16, memory_mb=65536, gpus=2, gpu="l4")
        .node("us-iad-01", status="online", region="us", cpu=4, memory_mb=8192)
        .node("us-iad-02", region="us", connected=False)
        .node("ap-sin-01", status="offline", connected=False, region="ap")
        .instance("us-iad-01", cpu=2.5, memory_mb=1024)
        .instance("eu-fra-01", cpu=6, memory_mb=4096)
    )


# --- which node -------------------------------------------------------------


@pytest.mark.parametrize(
    ("request_", "chosen"),
    [
        pytest.param(PlacementRequest(need(1, 1024)), "eu-ams-01", id="spread: most free share"),
        pytest.param(PlacementRequest(need(1, 1024), policy=Policy.PACK), "eu-fra-01", id="pack: least free"),
        pytest.param(PlacementRequest(need(1.5, 2048), policy=Policy.PACK), "us-iad-01", id="pack: just fits"),
        pytest.param(PlacementRequest(need(gpu=1)), "eu-ams-01", id="GPU"),
        pytest.param(PlacementRequest(need(1), selector=Selector.parse("region=us")), "us-iad-01", id="selector"),
        pytest.param(PlacementRequest(need(1), platform=platform(gpu="l4")), "eu-ams-01", id="platform labels"),
        pytest.param(PlacementRequest(need(4), selector=Selector.parse("region in (eu,us)"), policy=Policy.PACK),
                     "eu-ams-01", id="only one has room"),
        pytest.param(PlacementRequest(need(1), node_id="us-iad-01"), "us-iad-01", id="named node"),
    ],
)
def test_chooses(request_: PlacementRequest, chosen: str) -> None:
    assert world().placement().place(request_).node.id == chosen


@pytest.mark.parametrize(
    ("request_", "reasons"),
    [
        pytest.param(
            PlacementRequest(need(32)),
            {
                "eu-fra-01": "needs 32 CPU (2 free)",
                "eu-ams-01": "needs 32 CPU (16 free)",
                "us-iad-01": "needs 32 CPU (1.5 free)",
                "us-iad-02": "ready but its agent is not connected",
                "eu-fra-02": "in maintenance",
                "ap-sin-01": "offline",
            },
            id="too big",
        ),
        pytest.param(
            PlacementRequest(need(1, 9000, gpu=3)),
            {
                "eu-fra-01": "needs 3 GPU (0 free)",
                "eu-ams-01": "needs 3 GPU (2 free)",
                "us-iad-01": "needs 9000 MB memory (7168 MB free), needs 3 GPU (0 free)",
            },
            id="memory and GPU",
        ),
        pytest.param(
            PlacementRequest(need(1), selector=Selector.parse("region=ap,tier")),
            {
                "eu-fra-01": "label region is eu (selector wants region=ap), label tier missing (selector wants tier)",
                "us-iad-01": "label region is us (selector wants region=ap), label tier missing (selector wants tier)",
            },
            id="selector",
        ),
        pytest.param(
            PlacementRequest(need(1), platform=platform(gpu="a100")),
            {
                "eu-ams-01": "label gpu is l4 (platform docker requires gpu=a100)",
                "eu-fra-01": "label gpu missing (platform docker requires gpu=a100)",
            },
            id="platform labels",
        ),
    ],
)
def test_rejection_reasons(request_: PlacementRequest, reasons: dict[str, str]) -> None:
    fits, rejections = world().placement().evaluate(request_)
    assert fits == []
    got = {r.node_id: r.reason for r in rejections}
    assert {k: got[k] for k in reasons} == reasons
    assert len(rejections) == 6


def test_no_fit_is_a_conflict_naming_every_node_closest_first() -> None:
    with pytest.raises(Conflict) as err:
        world().placement().place(PlacementRequest(need(32), what="quake 1.0.0 on platform docker"))
    message = err.value.message
    assert message.startswith("no node can take quake 1.0.0 on platform docker (6 nodes rejected): ")
    order = ["eu-ams-01", "eu-fra-01", "us-iad-01", "us-iad-02", "ap-sin-01", "eu-fra-02"]
    assert [d.path for d in err.value.details] == order
    assert "us-iad-01: needs 32 CPU (1.5 free); us-iad-02: ready but its agent is not connected" in message
    assert [message.index(n + ":") for n in order] == sorted(message.index(n + ":") for n in order)


def test_no_fit_message_is_capped_and_counts_the_rest() -> None:
    fleet = Fleet()
    for k in range(DETAIL_REASONS + 5):
        fleet.node(f"n{k:03}", status="maintenance")
    with pytest.raises(Conflict) as err:
        fleet.placement().place(PlacementRequest(need(1)))
    assert err.value.message.count("in maintenance") == MESSAGE_REASONS
    assert err.value.message.endswith(f"; and {DETAIL_REASONS + 5 - MESSAGE_REASONS} more nodes")
    assert len(err.value.details) == DETAIL_REASONS + 1
    assert err.value.details[-1].message == "and 5 more nodes"


def test_no_nodes_at_all() -> None:
    with pytest.raises(Conflict, match="there are no nodes"):
        Fleet().placement().place(PlacementRequest(need(1)))


def test_named_node_is_still_checked() -> None:
    placement = world().placement()
    with pytest.raises(Conflict) as err:
        placement.place(PlacementRequest(need(1), node_id="eu-fra-02"))
    assert err.value.message == "node 'eu-fra-02' cannot take the instance: in maintenance"
    with pytest.raises(Conflict, match=r"node 'us-iad-01' cannot take the instance: needs 2 CPU \(1.5 free\)"):
        placement.place(PlacementRequest(need(2), node_id="us-iad-01"))
    with pytest.raises(NotFound):
        placement.place(PlacementRequest(need(1), node_id="ghost"))


def test_stopped_and_failed_instances_hold_nothing() -> None:
    fleet = Fleet().node("n1", cpu=2).instance("n1", cpu=2, state="stopped").instance("n1", cpu=2, state="failed")
    assert fleet.placement().place(PlacementRequest(need(2))).free == need(2, 16384)
    fleet.instance("n1", cpu=1, state="pending")
    with pytest.raises(Conflict, match=r"needs 2 CPU \(1 free\)"):
        fleet.placement().place(PlacementRequest(need(2)))


def test_without_a_connection_check_the_stored_online_flag_counts() -> None:
    fleet = Fleet().node("a").node("b")
    fleet.nodes["b"] = fleet.nodes["b"].model_copy(update={"online": True})
    placement = Placement(fleet, _Instances(fleet))
    assert placement.place(PlacementRequest(need(1))).node.id == "b"


# --- order ------------------------------------------------------------------


def test_spread_ties_by_fewest_instances_then_id() -> None:
    fleet = Fleet().node("c").node("b").node("a").instance("a").instance("a").instance("b")
    fits, _ = fleet.placement().evaluate(PlacementRequest(need(1)))
    assert [f.node.id for f in fits] == ["c", "b", "a"]
    assert [f.instances for f in fits] == [0, 1, 2]


def test_pack_ties_by_most_instances_then_id() -> None:
    fleet = Fleet().node("c").node("b").node("a").instance("c").instance("c")
    fits, _ = fleet.placement().evaluate(PlacementRequest(need(1), policy=Policy.PACK))
    assert [f.node.id for f in fits] == ["c", "a", "b"]


def test_free_capacity_is_a_share_so_spread_balances_unequal_nodes() -> None:
    # big: 64 cores, 48 used (25 % free); small: 8 cores, 2 used (75 % free)
    fleet = Fleet().node("big", cpu=64, memory_mb=65536).node("small", cpu=8, memory_mb=8192)
    fleet.instance("big", cpu=48, memory_mb=49152).instance("small", cpu=2, memory_mb=2048)
    placement = fleet.placement()
    assert placement.place(PlacementRequest(need(1, 1024))).node.id == "small"
    assert placement.place(PlacementRequest(need(1, 1024), policy=Policy.PACK)).node.id == "big"


def test_gpus_count_in_the_share_only_when_asked_for() -> None:
    fleet = Fleet().node("gpu", gpus=4).node("plain").instance("gpu", gpu=3)
    fits, _ = fleet.placement().evaluate(PlacementRequest(need(1, 1024)))
    assert fits[0].headroom == fits[1].headroom  # the GPUs in use do not count for a CPU-only instance
    fits, _ = fleet.placement().evaluate(PlacementRequest(need(1, 1024, gpu=1)))
    assert [f.node.id for f in fits] == ["gpu"]


def test_spread_fills_a_fleet_evenly() -> None:
    fleet = Fleet().node("a", cpu=4).node("b", cpu=4).node("c", cpu=4)
    for _ in range(9):
        fit = fleet.placement().place(PlacementRequest(need(1, 1024)))
        fleet.instance(fit.node.id, cpu=1, memory_mb=1024)
    counts = {n: len(_Instances(fleet).on_node(n)) for n in "abc"}
    assert counts == {"a": 3, "b": 3, "c": 3}


def test_pack_fills_one_node_before_the_next() -> None:
    fleet = Fleet().node("a", cpu=4).node("b", cpu=4)
    chosen = []
    for _ in range(6):
        fit = fleet.placement().place(PlacementRequest(need(1, 1024), policy=Policy.PACK))
        fleet.instance(fit.node.id, cpu=1, memory_mb=1024)
        chosen.append(fit.node.id)
    assert chosen == ["a", "a", "a", "a", "b", "b"]


# --- never overbooks (property) -----------------------------------------------

NODE = st.fixed_dictionaries({
    "status": st.sampled_from(["ready", "online", "maintenance", "offline"]),
    "cpu": st.sampled_from([0, 1, 2, 4, 8]),
    "memory_mb": st.sampled_from([0, 1024, 4096]),
    "gpus": st.integers(0, 2),
    "connected": st.booleans(),
    "region": st.sampled_from(["eu", "us"]),
})
NEED = st.builds(need, st.sampled_from([0, 0.5, 1, 2, 3]), st.sampled_from([0, 512, 1024, 4096]), st.integers(0, 2))


@settings(max_examples=150, deadline=None)
@given(
    nodes=st.lists(NODE, max_size=6),
    placed=st.lists(st.tuples(st.integers(0, 5), NEED), max_size=8),
    wanted=NEED,
    policy=st.sampled_from(list(Policy)),
    selector=st.sampled_from(["", "region=eu", "region!=eu"]),
)
def test_a_placed_instance_never_overbooks_its_node(
    nodes: list[dict[str, Any]], placed: list[tuple[int, Resources]], wanted: Resources, policy: Policy,
    selector: str,
) -> None:
    fleet = Fleet()
    for k, spec in enumerate(nodes):
        fleet.node(f"n{k}", **spec)
    for k, res in placed:  # what is already there was placed the same way
        try:
            fit = fleet.placement().place(PlacementRequest(res, node_id=f"n{k}" if k < len(nodes) else None))
        except (Conflict, NotFound):
            continue
        fleet.instance(fit.node.id, res.cpu, res.memory_mb, res.gpu)
    request = PlacementRequest(wanted, selector=Selector.parse(selector), policy=policy)
    fits, rejections = fleet.placement().evaluate(request)
    assert len(fits) + len(rejections) == len(nodes)
    for fit in fits:
        node = fleet.nodes[fit.node.id]
        used = sum((i.resources for i in _Instances(fleet).on_node(node.id)), Resources())
        assert (used + wanted).fits_in(node_capacity(node))
        assert node.status in (NodeStatus.READY, NodeStatus.ONLINE) and node.id in fleet.connected
        assert Selector.parse(selector).matches(node.labels)
    assert all(r.reason for r in rejections)


# --- concurrent launches (real stores, the services' lock) -----------------------


def test_concurrent_launches_never_exceed_capacity(
    services: Services, make_node: Callable[..., GameNode], make_platform: Callable[..., Platform],
    make_card: Callable[..., Any],
) -> None:
    for k in range(3):
        make_node(f"n{k}", status="online", hardware=hw(4, 8192))
    make_platform("docker")
    make_card("quake", platform="docker",
              versions=[{"version": "1.0.0", "image": "q:1", "resources": {"cpu": 1, "memory_mb": 1024}}])
    launcher = LaunchService.over(services, FakeRuns(services), is_online=lambda _: True)
    barrier = threading.Barrier(16)

    def launch(k: int) -> str:
        if k < 16:
            barrier.wait()
        try:
            return launcher.launch(LaunchRequest(game="quake", policy=Policy.PACK if k % 2 else Policy.SPREAD)) \
                .instance.node_id
        except Conflict:
            return "refused"

    with ThreadPoolExecutor(16) as pool:
        results = list(pool.map(launch, range(30)))
    assert results.count("refused") == 18
    for k in range(3):
        live = [i for i in services.instances.instances.on_node(f"n{k}") if i.state.live]
        assert len(live) == 4
        assert services.instances.free(f"n{k}") == Resources(cpu=0, memory_mb=4096)
