"""InstanceService: reservations against node capacity, game defaults, the state machine, listing."""

from __future__ import annotations

import itertools
import re
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from console.errors import Conflict, InvalidInput, NotFound
from console.models import GameNode, Instance, InstanceState, Resources
from console.service import InstanceQuery, InstanceSpec, Services, node_capacity
from console.service.instances import SORT_FIELDS, TRANSITIONS, ContainerReport

S = InstanceState
MakeNode = Callable[..., GameNode]
MakeInstance = Callable[..., Instance]

HARDWARE = {
    "cpu": {"model": "EPYC", "cores": 4},
    "memory_mb": 8192,
    "gpus": [{"model": "L4"}, {"model": "L4"}],
}

# The state machine as the module docstring draws it.
DOCUMENTED = {
    S.PENDING: {S.PREPARING, S.STOPPING, S.FAILED},
    S.PREPARING: {S.STARTING, S.STOPPING, S.FAILED},
    S.STARTING: {S.RUNNING, S.STOPPING, S.FAILED},
    S.RUNNING: {S.STOPPING, S.FAILED},
    S.STOPPING: {S.STOPPED, S.FAILED},
    S.STOPPED: set(),
    S.FAILED: set(),
}

# How to reach each state from pending.
PATH = {
    S.PENDING: [],
    S.PREPARING: [S.PREPARING],
    S.STARTING: [S.PREPARING, S.STARTING],
    S.RUNNING: [S.PREPARING, S.STARTING, S.RUNNING],
    S.STOPPING: [S.STOPPING],
    S.STOPPED: [S.STOPPING, S.STOPPED],
    S.FAILED: [S.FAILED],
}

LIVE = [s for s in S if s not in (S.STOPPED, S.FAILED)]


@pytest.fixture
def node(make_node: MakeNode) -> GameNode:
    """n1: 4 cores, 8 GiB, 2 GPUs."""
    return make_node("n1", hardware=HARDWARE, labels={"region": "eu"})


def drive(services: Services, id: str, to: InstanceState) -> Instance:
    instance = services.instances.get_instance(id)
    for state in PATH[to]:
        instance = services.instances.transition(id, state)
    return instance


def res(cpu: float = 0, memory_mb: int = 0, gpu: int = 0) -> dict[str, Any]:
    return {"cpu": cpu, "memory_mb": memory_mb, "gpu": gpu}


# --- capacity ---------------------------------------------------------------


def _node(hardware: Any) -> GameNode:
    return GameNode(id="n", name="n", type="physical", hardware=hardware)


@pytest.mark.parametrize(
    ("hardware", "capacity"),
    [
        (HARDWARE, Resources(cpu=4, memory_mb=8192, gpu=2)),
        ({"cpu_cores": 8, "memory_mb": 1024, "gpu_count": 3}, Resources(cpu=8, memory_mb=1024, gpu=3)),
        ({"cpu": {"cores": 2.5}}, Resources(cpu=2.5)),
        ({"gpus": [], "gpu_count": 4}, Resources()),  # the inventory list wins over a count
        ({"cpu": {"model": "x"}, "cpu_cores": 8}, Resources()),  # a cpu map without cores has none
        ({"cpu": {"cores": "8"}, "memory_mb": True, "gpu_count": -1}, Resources()),  # nonsense is nothing
        ({"memory_mb": 1536.9}, Resources(memory_mb=1536)),
        ({}, Resources()),
    ],
)
def test_node_capacity_reads_the_hardware_inventory(hardware: dict[str, Any], capacity: Resources) -> None:
    assert node_capacity(_node(hardware)) == capacity


# --- create and reserve -----------------------------------------------------


def test_create_reserves_what_the_instance_needs(services: Services, node: GameNode, clock: Any) -> None:
    inst = services.instances.create_instance(
        InstanceSpec(node_id="n1", resources=Resources(cpu=1.5, memory_mb=2048, gpu=1), run_id="run-1")
    )

    assert re.fullmatch(r"inst-[0-9a-f]{12}", inst.id)
    assert inst.state == S.PENDING
    assert inst.created_at == inst.updated_at == clock.now
    assert (inst.started_at, inst.stopped_at, inst.error) == (None, None, None)
    assert inst.run_id == "run-1"
    assert services.instances.get_instance(inst.id) == inst
    assert services.instances.reserved("n1") == Resources(cpu=1.5, memory_mb=2048, gpu=1)
    assert services.instances.free("n1") == Resources(cpu=2.5, memory_mb=6144, gpu=1)


def test_generated_ids_differ(services: Services, node: GameNode, make_instance: MakeInstance) -> None:
    assert len({make_instance("n1").id for _ in range(5)}) == 5


def test_create_with_a_taken_id_is_a_conflict(
    services: Services, node: GameNode, make_instance: MakeInstance
) -> None:
    make_instance("n1", id="i1", resources=res(cpu=1))

    with pytest.raises(Conflict, match="already exists"):
        make_instance("n1", id="i1", resources=res(cpu=1))
    assert services.instances.reserved("n1") == Resources(cpu=1)


def test_instances_may_fill_a_node_exactly(
    services: Services, node: GameNode, make_instance: MakeInstance
) -> None:
    make_instance("n1", resources=res(cpu=3, memory_mb=8000, gpu=1))
    make_instance("n1", resources=res(cpu=1, memory_mb=192, gpu=1))

    assert services.instances.free("n1") == Resources()
    make_instance("n1")  # needing nothing still fits


@pytest.mark.parametrize(
    ("need", "short", "not_short"),
    [
        (res(cpu=3), ["CPU 3 cores wanted, 2 of 4 free"], ["memory", "GPU"]),
        (res(memory_mb=5000), ["memory 5000 MB wanted, 4096 of 8192 MB free"], ["CPU", "GPU"]),
        (res(gpu=2), ["GPU 2 wanted, 1 of 2 free"], ["CPU", "memory"]),
        (
            res(cpu=2.5, memory_mb=4097, gpu=2),
            [
                "CPU 2.5 cores wanted, 2 of 4 free",
                "memory 4097 MB wanted, 4096 of 8192 MB free",
                "GPU 2 wanted, 1 of 2 free",
            ],
            [],
        ),
    ],
)
def test_over_allocation_is_refused_saying_what_is_short(
    services: Services,
    node: GameNode,
    make_instance: MakeInstance,
    need: dict[str, Any],
    short: list[str],
    not_short: list[str],
) -> None:
    make_instance("n1", id="first", resources=res(cpu=2, memory_mb=4096, gpu=1))

    with pytest.raises(Conflict, match="node 'n1' has not enough room") as info:
        make_instance("n1", id="second", resources=need)

    message = str(info.value)
    for words in short:
        assert words in message
    for words in not_short:
        assert words not in message
    assert [i.id for i in services.instances.list_instances().items] == ["first"]
    assert services.instances.reserved("n1") == Resources(cpu=2, memory_mb=4096, gpu=1)


def test_a_node_without_inventory_takes_only_instances_that_need_nothing(
    services: Services, make_node: MakeNode, make_instance: MakeInstance
) -> None:
    make_node("bare")

    make_instance("bare")
    with pytest.raises(Conflict, match=r"CPU 0\.5 cores wanted, 0 of 0 free"):
        make_instance("bare", resources=res(cpu=0.5))


@pytest.mark.parametrize("end", [S.STOPPED, S.FAILED])
def test_resources_are_freed_when_an_instance_ends(
    services: Services, node: GameNode, make_instance: MakeInstance, end: InstanceState
) -> None:
    make_instance("n1", id="big", resources=res(cpu=4, memory_mb=8192, gpu=2))
    with pytest.raises(Conflict):
        make_instance("n1", id="next", resources=res(cpu=1))

    drive(services, "big", S.RUNNING)
    assert services.instances.reserved("n1") == Resources(cpu=4, memory_mb=8192, gpu=2)  # running still holds
    if end == S.STOPPED:
        services.instances.transition("big", S.STOPPING)
        assert services.instances.free("n1") == Resources()  # stopping still holds
    services.instances.transition("big", end)

    assert services.instances.reserved("n1") == Resources()
    assert make_instance("n1", id="next", resources=res(cpu=4, memory_mb=8192, gpu=2)).id == "next"


def test_reservations_are_per_node(
    services: Services, node: GameNode, make_node: MakeNode, make_instance: MakeInstance
) -> None:
    make_node("n2", hardware=HARDWARE)
    make_instance("n1", resources=res(cpu=4))

    assert make_instance("n2", resources=res(cpu=4)).node_id == "n2"
    assert services.instances.reserved("n1") == services.instances.reserved("n2") == Resources(cpu=4)


def test_create_on_an_unknown_node_is_not_found(services: Services) -> None:
    with pytest.raises(NotFound, match="node 'ghost'"):
        services.instances.create_instance({"node_id": "ghost"})


def test_create_on_a_node_in_maintenance_is_refused(services: Services, make_node: MakeNode) -> None:
    make_node("n1", status="maintenance", hardware=HARDWARE)

    with pytest.raises(Conflict, match="maintenance"):
        services.instances.create_instance({"node_id": "n1"})
    assert services.instances.list_instances().total == 0


@pytest.mark.parametrize("status", ["offline", "online", "ready"])
def test_create_on_a_node_in_any_other_status_is_allowed(
    services: Services, make_node: MakeNode, status: str
) -> None:
    make_node("n1", status=status)

    assert services.instances.create_instance({"node_id": "n1"}).node_id == "n1"


@pytest.mark.parametrize(
    ("spec", "path"),
    [
        ({"resources": {"cpu": -1}}, "resources.cpu"),
        ({"ports": [{"container_port": 0}]}, "ports[0].container_port"),
        ({"ports": [{"container_port": 80, "protocol": "sctp"}]}, "ports[0].protocol"),
        ({"id": "bad id"}, "id"),
        ({"colour": "red"}, "colour"),
    ],
)
def test_create_refuses_a_bad_spec_naming_the_field(
    services: Services, node: GameNode, spec: dict[str, Any], path: str
) -> None:
    with pytest.raises(InvalidInput) as info:
        services.instances.create_instance({"node_id": "n1", **spec})

    assert path in [d.path for d in info.value.details]
    assert services.instances.list_instances().total == 0


# --- game defaults ----------------------------------------------------------


@pytest.fixture
def game(
    services: Services, node: GameNode, make_platform: Callable[..., Any], make_card: Callable[..., Any]
) -> None:
    """Card `quake` on platform `docker`: 1.0.0 (1 core), 1.10.0 (2 cores), 1.9.0 (3 cores)."""
    make_platform("docker")
    make_platform("other")
    make_card(
        "quake",
        platform="docker",
        versions=[
            {"version": "1.0.0", "image": "q:1.0", "resources": res(cpu=1, memory_mb=512)},
            {"version": "1.10.0", "image": "q:1.10", "resources": res(cpu=2, memory_mb=1024)},
            {"version": "1.9.0", "image": "q:1.9", "resources": res(cpu=3, memory_mb=2048)},
        ],
    )


def test_a_game_fills_version_resources_and_platform(services: Services, game: None) -> None:
    inst = services.instances.create_instance({"node_id": "n1", "game": "quake"})

    assert (inst.game, inst.game_version, inst.platform) == ("quake", "1.10.0", "docker")
    assert inst.resources == Resources(cpu=2, memory_mb=1024)
    assert services.instances.reserved("n1") == Resources(cpu=2, memory_mb=1024)


def test_a_given_version_brings_its_own_resources(services: Services, game: None) -> None:
    inst = services.instances.create_instance({"node_id": "n1", "game": "quake", "game_version": "1.9.0"})

    assert (inst.game_version, inst.resources) == ("1.9.0", Resources(cpu=3, memory_mb=2048))


def test_given_resources_and_platform_win_over_the_card(services: Services, game: None) -> None:
    inst = services.instances.create_instance(
        {"node_id": "n1", "game": "quake", "platform": "other", "resources": res(cpu=0.5)}
    )

    assert (inst.platform, inst.resources, inst.game_version) == ("other", Resources(cpu=0.5), "1.10.0")


def test_the_explicit_default_version_is_used(services: Services, game: None) -> None:
    services.gamecards.set_default_version("quake", "1.0.0")

    inst = services.instances.create_instance({"node_id": "n1", "game": "quake"})

    assert (inst.game_version, inst.resources) == ("1.0.0", Resources(cpu=1, memory_mb=512))


def test_the_default_skips_deprecated_versions(services: Services, game: None) -> None:
    services.gamecards.deprecate_version("quake", "1.10.0")

    assert services.instances.create_instance({"node_id": "n1", "game": "quake"}).game_version == "1.9.0"


def test_a_version_too_big_for_the_node_is_refused(services: Services, game: None) -> None:
    services.instances.create_instance({"node_id": "n1", "resources": res(cpu=2)})

    with pytest.raises(Conflict, match="CPU 3 cores wanted, 2 of 4 free"):
        services.instances.create_instance({"node_id": "n1", "game": "quake", "game_version": "1.9.0"})


def test_a_deprecated_version_is_refused(services: Services, game: None) -> None:
    services.gamecards.deprecate_version("quake", "1.0.0")

    with pytest.raises(Conflict, match="deprecated"):
        services.instances.create_instance({"node_id": "n1", "game": "quake", "game_version": "1.0.0"})
    assert services.instances.list_instances().total == 0


def test_a_card_without_active_versions_has_no_default(services: Services, game: None) -> None:
    for v in ("1.0.0", "1.9.0", "1.10.0"):
        services.gamecards.deprecate_version("quake", v)

    with pytest.raises(Conflict, match="no active version"):
        services.instances.create_instance({"node_id": "n1", "game": "quake"})


def test_an_unknown_version_is_refused(services: Services, game: None) -> None:
    with pytest.raises(Conflict, match=r"'2\.0\.0'"):
        services.instances.create_instance({"node_id": "n1", "game": "quake", "game_version": "2.0.0"})


def test_an_unknown_game_is_not_found(services: Services, node: GameNode) -> None:
    with pytest.raises(NotFound, match="game card 'doom'"):
        services.instances.create_instance({"node_id": "n1", "game": "doom"})


def test_a_version_without_a_game_is_invalid(services: Services, node: GameNode) -> None:
    with pytest.raises(InvalidInput, match="game_version"):
        services.instances.create_instance({"node_id": "n1", "game_version": "1.0.0"})


def test_a_disabled_platform_takes_no_instances(services: Services, game: None) -> None:
    services.platforms.disable("docker")

    with pytest.raises(Conflict, match="platform 'docker' is disabled"):
        services.instances.create_instance({"node_id": "n1", "game": "quake"})
    with pytest.raises(Conflict, match="disabled"):
        services.instances.create_instance({"node_id": "n1", "platform": "docker"})

    services.platforms.enable("docker")
    assert services.instances.create_instance({"node_id": "n1", "game": "quake"}).platform == "docker"


def test_an_unknown_platform_is_not_found(services: Services, node: GameNode) -> None:
    with pytest.raises(NotFound, match="platform 'ghost'"):
        services.instances.create_instance({"node_id": "n1", "platform": "ghost"})


def test_a_node_needs_the_labels_its_platform_requires(
    services: Services, node: GameNode, make_platform: Callable[..., Any]
) -> None:
    make_platform("gpu", required_labels={"region": "eu", "gpu": "yes", "arch": "x86"})

    with pytest.raises(Conflict) as info:
        services.instances.create_instance({"node_id": "n1", "platform": "gpu"})
    assert "requires: arch=x86, gpu=yes" in str(info.value)
    assert "region" not in str(info.value)

    services.nodes.update_labels("n1", set={"gpu": "no", "arch": "x86"})
    with pytest.raises(Conflict, match=r"requires: gpu=yes$"):  # a wrong value is no better than none
        services.instances.create_instance({"node_id": "n1", "platform": "gpu"})

    services.nodes.update_labels("n1", set={"gpu": "yes"})
    assert services.instances.create_instance({"node_id": "n1", "platform": "gpu"}).platform == "gpu"


# --- state machine ----------------------------------------------------------


def test_the_transition_table_is_the_documented_one() -> None:
    assert {k: set(v) for k, v in TRANSITIONS.items()} == DOCUMENTED


def test_every_state_is_reachable_by_its_path() -> None:
    for state, path in PATH.items():
        current = S.PENDING
        for step in path:
            assert step in DOCUMENTED[current]
            current = step
        assert current == state


LEGAL = [(a, b) for a, b in itertools.permutations(S, 2) if b in DOCUMENTED[a]]
ILLEGAL = [(a, b) for a, b in itertools.permutations(S, 2) if b not in DOCUMENTED[a]]


@pytest.mark.parametrize(("old", "new"), LEGAL)
def test_every_legal_transition_is_allowed(
    services: Services,
    node: GameNode,
    make_instance: MakeInstance,
    clock: Any,
    old: InstanceState,
    new: InstanceState,
) -> None:
    make_instance("n1", id="i1", resources=res(cpu=1))
    before = drive(services, "i1", old)
    clock.advance(30)

    inst = services.instances.transition("i1", new)

    assert inst.state == new
    assert inst.updated_at == clock.now
    assert services.instances.get_instance("i1") == inst
    assert inst.started_at == (clock.now if new == S.RUNNING else before.started_at)
    assert inst.stopped_at == (None if new.live else clock.now)
    assert inst.error == ("failed" if new == S.FAILED else None)
    assert services.instances.reserved("n1") == (Resources(cpu=1) if new.live else Resources())


@pytest.mark.parametrize(("old", "new"), ILLEGAL)
def test_every_illegal_transition_is_a_conflict(
    services: Services, node: GameNode, make_instance: MakeInstance, old: InstanceState, new: InstanceState
) -> None:
    make_instance("n1", id="i1")
    before = drive(services, "i1", old)

    with pytest.raises(Conflict) as info:
        services.instances.transition("i1", new)

    allowed = ", ".join(sorted(s.value for s in DOCUMENTED[old])) or "nothing (final)"
    assert f"from {old.value} to {new.value}" in str(info.value)
    assert f"can go to: {allowed}" in str(info.value)
    assert services.instances.get_instance("i1") == before


@pytest.mark.parametrize("state", list(S))
def test_moving_to_the_current_state_changes_nothing(
    services: Services, node: GameNode, make_instance: MakeInstance, clock: Any, state: InstanceState
) -> None:
    make_instance("n1", id="i1")
    before = drive(services, "i1", state)
    clock.advance(30)

    assert services.instances.transition("i1", state.value) == before


def test_failing_keeps_the_error(services: Services, node: GameNode, make_instance: MakeInstance) -> None:
    make_instance("n1", id="i1")
    drive(services, "i1", S.RUNNING)

    assert services.instances.transition("i1", "failed", error="exit code 137").error == "exit code 137"


def test_a_transition_may_set_the_container_id(
    services: Services, node: GameNode, make_instance: MakeInstance
) -> None:
    make_instance("n1", id="i1")
    services.instances.transition("i1", S.PREPARING)

    assert services.instances.transition("i1", S.STARTING, container_id="abc123").container_id == "abc123"
    assert services.instances.transition("i1", S.RUNNING).container_id == "abc123"


def test_start_and_stop_times_are_kept(
    services: Services, node: GameNode, make_instance: MakeInstance, clock: Any
) -> None:
    make_instance("n1", id="i1")
    services.instances.transition("i1", S.PREPARING)
    services.instances.transition("i1", S.STARTING)
    clock.advance(10)
    started = clock.now
    services.instances.transition("i1", S.RUNNING)
    clock.advance(10)
    services.instances.transition("i1", S.STOPPING)
    clock.advance(10)

    inst = services.instances.transition("i1", S.STOPPED)

    assert (inst.started_at, inst.stopped_at) == (started, clock.now)


@pytest.mark.parametrize("state", ["sleeping", "", "RUNNING", None])
def test_an_unknown_state_is_invalid(
    services: Services, node: GameNode, make_instance: MakeInstance, state: Any
) -> None:
    make_instance("n1", id="i1")

    with pytest.raises(InvalidInput, match="state: must be one of"):
        services.instances.transition("i1", state)


def test_transition_of_an_unknown_instance_is_not_found(services: Services) -> None:
    with pytest.raises(NotFound, match="instance 'ghost'"):
        services.instances.transition("ghost", S.RUNNING)


# --- update and delete ------------------------------------------------------


def test_update_changes_the_allowed_fields(
    services: Services, node: GameNode, make_instance: MakeInstance, clock: Any
) -> None:
    old = make_instance("n1", id="i1", params={"map": "dm1"}, resources=res(cpu=1))
    clock.advance(5)

    inst = services.instances.update_instance(
        "i1",
        {
            "container_id": "c1",
            "run_id": "r2",
            "params": {"map": "dm2"},
            "ports": [{"name": "game", "container_port": 27960, "host_port": 30001, "protocol": "udp"}],
        },
    )

    assert (inst.container_id, inst.run_id, inst.params) == ("c1", "r2", {"map": "dm2"})
    assert [(p.container_port, p.host_port, p.protocol) for p in inst.ports] == [(27960, 30001, "udp")]
    assert inst.updated_at == clock.now
    assert (inst.state, inst.resources, inst.created_at) == (old.state, old.resources, old.created_at)
    assert services.instances.get_instance("i1") == inst


@pytest.mark.parametrize("field", ["state", "resources", "node_id", "game", "error", "id"])
def test_update_refuses_other_fields_by_name(
    services: Services, node: GameNode, make_instance: MakeInstance, field: str
) -> None:
    before = make_instance("n1", id="i1")

    with pytest.raises(InvalidInput, match=f"^{field}: cannot be changed here"):
        services.instances.update_instance("i1", {field: "x", "run_id": "r"})
    assert services.instances.get_instance("i1") == before


def test_update_refuses_a_bad_value(services: Services, node: GameNode, make_instance: MakeInstance) -> None:
    before = make_instance("n1", id="i1")

    with pytest.raises(InvalidInput, match=r"ports\[0\]\.container_port"):
        services.instances.update_instance("i1", {"ports": [{"container_port": 70000}]})
    assert services.instances.get_instance("i1") == before


@pytest.mark.parametrize("end", [S.STOPPED, S.FAILED])
def test_an_ended_instance_cannot_be_updated(
    services: Services, node: GameNode, make_instance: MakeInstance, end: InstanceState
) -> None:
    make_instance("n1", id="i1")
    drive(services, "i1", end)

    with pytest.raises(Conflict, match=f"is {end.value}"):
        services.instances.update_instance("i1", {"run_id": "r"})


@pytest.mark.parametrize("state", LIVE)
def test_delete_is_refused_while_live(
    services: Services, node: GameNode, make_instance: MakeInstance, state: InstanceState
) -> None:
    make_instance("n1", id="i1")
    drive(services, "i1", state)

    with pytest.raises(Conflict, match="stop it before deleting it"):
        services.instances.delete_instance("i1")
    assert services.instances.get_instance("i1").state == state


@pytest.mark.parametrize("end", [S.STOPPED, S.FAILED])
def test_delete_removes_an_ended_instance(
    services: Services, node: GameNode, make_instance: MakeInstance, end: InstanceState
) -> None:
    make_instance("n1", id="i1")
    drive(services, "i1", end)

    assert services.instances.delete_instance("i1").id == "i1"
    with pytest.raises(NotFound):
        services.instances.get_instance("i1")
    with pytest.raises(NotFound):
        services.instances.delete_instance("i1")


# --- listing ----------------------------------------------------------------


@pytest.fixture
def many(services: Services, game: None, make_node: MakeNode, make_instance: MakeInstance) -> Services:
    """i1 n1 quake/docker running, i2 n1 quake/docker stopped, i3 n2 no game/other pending,
    i4 n2 quake/other failed, i5 n1 no game pending."""
    make_node("n2", hardware=HARDWARE)
    make_instance("n1", id="i1", game="quake", resources=res())
    make_instance("n1", id="i2", game="quake", resources=res())
    make_instance("n2", id="i3", platform="other")
    make_instance("n2", id="i4", game="quake", platform="other", resources=res())
    make_instance("n1", id="i5")
    drive(services, "i1", S.RUNNING)
    drive(services, "i2", S.STOPPED)
    drive(services, "i4", S.FAILED)
    return services


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ({}, ["i1", "i2", "i3", "i4", "i5"]),
        ({"node_id": "n1"}, ["i1", "i2", "i5"]),
        ({"node_id": "n3"}, []),
        ({"state": "pending"}, ["i3", "i5"]),
        ({"state": "running"}, ["i1"]),
        ({"game": "quake"}, ["i1", "i2", "i4"]),
        ({"platform": "docker"}, ["i1", "i2"]),
        ({"platform": "other"}, ["i3", "i4"]),
        ({"live": True}, ["i1", "i3", "i5"]),
        ({"live": False}, ["i2", "i4"]),
        ({"node_id": "n1", "live": True, "game": "quake"}, ["i1"]),
        ({"sort": "-id"}, ["i5", "i4", "i3", "i2", "i1"]),
        ({"sort": "game,id"}, ["i3", "i5", "i1", "i2", "i4"]),  # no game first
        ({"sort": "-state,id"}, ["i2", "i1", "i3", "i5", "i4"]),
        ({"sort": "platform,-node_id"}, ["i5", "i1", "i2", "i3", "i4"]),
    ],
)
def test_list_filters_and_sorts(many: Services, query: dict[str, Any], expected: list[str]) -> None:
    page = many.instances.list_instances(InstanceQuery(**query))

    assert [i.id for i in page.items] == expected
    assert page.total == len(expected)


def test_list_pages(many: Services) -> None:
    page = many.instances.list_instances(InstanceQuery(sort="-id", limit=2, offset=1))

    assert [i.id for i in page.items] == ["i4", "i3"]
    assert page.total == 5


def test_list_refuses_an_unknown_sort_field(many: Services) -> None:
    with pytest.raises(InvalidInput, match="unknown field 'resources'"):
        many.instances.list_instances(InstanceQuery(sort="resources"))


def test_every_sort_field_is_accepted(many: Services) -> None:
    for field in SORT_FIELDS:
        assert many.instances.list_instances(InstanceQuery(sort=f"-{field}")).total == 5


# --- concurrency ------------------------------------------------------------


def test_concurrent_creates_never_over_allocate(services: Services, make_node: MakeNode) -> None:
    make_node("n1", hardware={"cpu": {"cores": 5}, "memory_mb": 5 * 1024})
    threads = 20
    start = threading.Barrier(threads)

    def attempt(n: int) -> str:
        start.wait()
        try:
            services.instances.create_instance({"node_id": "n1", "id": f"i{n}", "resources": res(1, 1024)})
        except Conflict:
            return "refused"
        return "created"

    with ThreadPoolExecutor(threads) as pool:
        outcomes = list(pool.map(attempt, range(threads)))

    assert outcomes.count("created") == 5
    assert outcomes.count("refused") == threads - 5
    assert services.instances.list_instances().total == 5
    assert services.instances.reserved("n1") == Resources(cpu=5, memory_mb=5 * 1024)


# --- reconcile with the agent's container report -------------------------------


def _report(instance_id: str, state: str = "running", **fields: Any) -> ContainerReport:
    return ContainerReport(instance_id=instance_id, state=state, **fields)


@pytest.fixture
def fleet(services: Services, node: GameNode, make_node: MakeNode, make_instance: MakeInstance) -> Services:
    """On n1: one instance in each state (`i-<state>`); on n2: `other`, running."""
    for state in S:
        make_instance("n1", id=f"i-{state.value}")
        drive(services, f"i-{state.value}", state)
    make_node("n2")
    make_instance("n2", id="other")
    drive(services, "other", S.RUNNING)
    return services


def _states(services: Services) -> dict[str, str]:
    return {i.id: i.state.value for i in services.instances.list_instances().items}


def test_a_running_instance_whose_container_exited_fails(fleet: Services) -> None:
    changed = fleet.instances.reconcile("n1", [
        _report("i-running", "exited", container_id="c9", exit_code=137, error="OOMKilled"),
    ])

    [failed] = changed
    assert failed.state == S.FAILED and failed.container_id == "c9"
    assert failed.error == "container exited with code 137: OOMKilled"
    assert "i-running" not in [i.id for i in fleet.instances.list_instances(InstanceQuery(live=True)).items]


def test_a_dead_container_fails_its_instance_too(fleet: Services) -> None:
    [failed] = fleet.instances.reconcile("n1", [_report("i-running", "dead", exit_code=1)])
    assert failed.error == "container exited with code 1"


def test_a_running_instance_missing_from_a_full_report_is_gone(fleet: Services) -> None:
    before = _states(fleet)
    changed = fleet.instances.reconcile("n1", [], full=True)

    assert [(i.id, i.state, i.error) for i in changed] == [("i-running", S.FAILED, "container is gone")]
    assert _states(fleet) == {**before, "i-running": "failed"}


def test_a_partial_report_says_nothing_of_the_instances_it_leaves_out(fleet: Services) -> None:
    before = _states(fleet)
    assert fleet.instances.reconcile("n1", [], full=False) == []
    assert _states(fleet) == before


def test_a_starting_instance_whose_container_runs_is_running(fleet: Services, clock: Any) -> None:
    [running] = fleet.instances.reconcile("n1", [_report("i-starting", container_id="c1")])

    assert running.state == S.RUNNING and running.container_id == "c1" and running.started_at == clock.now


def test_a_running_instance_takes_a_new_container_id(fleet: Services) -> None:
    [changed] = fleet.instances.reconcile("n1", [_report("i-running", container_id="c2")])
    assert changed.container_id == "c2" and changed.state == S.RUNNING
    assert fleet.instances.reconcile("n1", [_report("i-running", container_id="c2")]) == []  # nothing to write


@pytest.mark.parametrize("state", [S.PENDING, S.PREPARING, S.STOPPING, S.STOPPED, S.FAILED])
@pytest.mark.parametrize("container", ["running", "exited"])
def test_other_states_are_left_to_their_runs(fleet: Services, state: InstanceState, container: str) -> None:
    before = fleet.instances.get_instance(f"i-{state.value}")
    assert fleet.instances.reconcile("n1", [_report(f"i-{state.value}", container, container_id="c7")]) == []
    assert fleet.instances.get_instance(f"i-{state.value}") == before


def test_unknown_instances_and_other_nodes_instances_are_ignored(
    fleet: Services, caplog: pytest.LogCaptureFixture
) -> None:
    before = _states(fleet)
    with caplog.at_level("DEBUG", logger="console.service.instances"):
        changed = fleet.instances.reconcile("n1", [_report("ghost", "exited"), _report("other", "exited")])

    assert changed == []
    assert _states(fleet) == before
    assert "instance 'ghost', unknown on that node" in caplog.text
    assert "instance 'other', unknown on that node" in caplog.text


def test_a_full_report_of_one_node_leaves_the_others_alone(fleet: Services) -> None:
    fleet.instances.reconcile("n1", [], full=True)
    assert fleet.instances.get_instance("other").state == S.RUNNING


def test_reconcile_takes_any_status_like_object(fleet: Services) -> None:
    class Status:
        instance_id = "i-running"
        container_id = ""
        state = "exited"
        exit_code = 0
        error = ""

    [failed] = fleet.instances.reconcile("n1", [Status()])
    assert failed.error == "container exited with code 0" and failed.container_id is None


def test_another_containers_exit_does_not_fail_an_instance(fleet: Services) -> None:
    fleet.instances.reconcile("n1", [_report("i-running", container_id="c-new")])
    before = fleet.instances.get_instance("i-running")
    assert fleet.instances.reconcile("n1", [_report("i-running", "exited", container_id="c-old", exit_code=0)]) == []
    assert fleet.instances.get_instance("i-running") == before


def test_busy_instances_are_left_to_the_run_changing_them(fleet: Services) -> None:
    before = _states(fleet)
    changed = fleet.instances.reconcile("n1", [_report("i-running", "exited", exit_code=137)], full=True,
                                        busy={"i-running"})
    assert changed == []
    assert _states(fleet) == before
