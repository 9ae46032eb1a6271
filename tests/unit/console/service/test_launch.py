"""LaunchService: resolving what to launch, placing it, starting and stopping it, container actions."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest
from launch_fakes import FakeRuns

from console.errors import Conflict, InvalidInput, NotFound, TimedOut
from console.models import GameCard, GameNode, Instance, InstanceState, Platform, Resources, RunState
from console.service import Services
from console.service.launch import (
    CommandResult,
    ContainerAction,
    LaunchRequest,
    LaunchService,
)

S = InstanceState
HW = {"cpu": {"cores": 4}, "memory_mb": 8192, "gpus": [{"model": "L4"}]}
NEED = {"cpu": 1, "memory_mb": 1024}


class FakeAgent:
    """Acks container actions with `result`; `hang` makes it never answer."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, ContainerAction, str, str]] = []
        self.result = CommandResult(ok=True)
        self.hang = False

    async def container_action(
        self, node_id: str, action: ContainerAction, instance_id: str, container_id: str
    ) -> CommandResult:
        self.calls.append((node_id, action, instance_id, container_id))
        if self.hang:
            await asyncio.Event().wait()
        return self.result


class World:
    def __init__(self, services: Services) -> None:
        self.services = services
        self.runs = FakeRuns(services)
        self.agent = FakeAgent()
        self.online = {"n1", "n2"}
        self.launcher = LaunchService.over(services, self.runs, self.online.__contains__, self.agent)
        self.launcher.action_timeout = 0.05

    def launch(self, **fields: Any) -> Instance:
        return self.launcher.launch(LaunchRequest(**{"game": "quake", **fields}), created_by="alice").instance

    def running(self, **fields: Any) -> Instance:
        """A launched instance driven to running, with a container."""
        instance = self.launch(**fields)
        for state in (S.PREPARING, S.STARTING, S.RUNNING):
            instance = self.services.instances.transition(instance.id, state, container_id="c-1")
        assert instance.run_id is not None
        self.runs.finish(instance.run_id)
        return instance


@pytest.fixture
def world(
    services: Services, make_node: Callable[..., GameNode], make_platform: Callable[..., Platform],
    make_card: Callable[..., GameCard],
) -> World:
    make_node("n1", status="ready", hardware=HW, labels={"region": "eu"})
    make_node("n2", status="online", hardware=HW, labels={"region": "us"})
    make_platform("docker", params={"port": 8080, "data_url": "", "registry_password": "s3cret"},
                  pipeline="platform-start")
    make_card("quake", platform="docker", versions=[
        {"version": "1.0.0", "image": "reg/quake:1.0.0", "resources": NEED, "params": {"port": 27960}},
        {"version": "1.1.0", "image": "reg/quake:1.1.0", "resources": {"cpu": 2, "memory_mb": 2048}},
        {"version": "2.0.0-rc.1", "image": "reg/quake:2-rc", "status": "deprecated"},
    ])
    return World(services)


# --- launch -------------------------------------------------------------------


def test_launch_places_reserves_and_starts_the_platform_pipeline(world: World) -> None:
    launched = world.launcher.launch(LaunchRequest(game="quake", version="1.0.0", params={"data_url": "x"}),
                                     created_by="alice")
    instance = launched.instance
    assert (instance.game, instance.game_version, instance.platform) == ("quake", "1.0.0", "docker")
    assert instance.state == S.PENDING and instance.resources == Resources(**NEED)
    assert instance.run_id == launched.run_id == "run-0"
    assert instance.params["registry_password"] == "***"  # what the run shows, never the secret
    [call] = world.runs.calls
    assert call.node_id == instance.node_id and call.instance_id == instance.id
    assert (call.pipeline, call.pipeline_yaml, call.created_by) == ("platform-start", None, "alice")
    assert call.params == {"port": 27960, "data_url": "x", "registry_password": "s3cret", "image": "reg/quake:1.0.0"}
    assert call.resources == Resources(**NEED)
    assert world.services.instances.reserved(instance.node_id) == Resources(**NEED)


def test_default_version_is_the_cards_default(world: World) -> None:
    assert world.launch().game_version == "1.1.0"
    world.services.gamecards.set_default_version("quake", "1.0.0")
    assert world.launch().game_version == "1.0.0"


@pytest.mark.parametrize(
    ("fields", "error", "match"),
    [
        ({"game": "doom"}, NotFound, "game card 'doom' not found"),
        ({"version": "9.9.9"}, NotFound, "game version 'quake@9.9.9' not found"),
        ({"version": "2.0.0-rc.1"}, Conflict, "deprecated"),
        ({"platform": "ghost"}, NotFound, "platform 'ghost' not found"),
        ({"selector": "tier in eu"}, InvalidInput, "column 9"),
        ({"params": {"image": "evil:latest"}}, InvalidInput, "params.image"),
        ({"node_id": "ghost"}, NotFound, "node 'ghost' not found"),
        ({"selector": "region=ap"}, Conflict, "n1: label region is eu"),
    ],
)
def test_launch_refusals(world: World, fields: dict[str, Any], error: type[Exception], match: str) -> None:
    with pytest.raises(error, match=match):
        world.launch(**fields)
    assert world.runs.calls == []
    assert world.services.instances.list_instances().total == 0


def test_a_disabled_platform_or_none_at_all(world: World, make_card: Callable[..., GameCard]) -> None:
    world.services.platforms.disable("docker")
    with pytest.raises(Conflict, match="platform 'docker' is disabled"):
        world.launch()
    make_card("solo", versions=["1.0.0"])
    with pytest.raises(InvalidInput, match="platform: game card 'solo' names no platform"):
        world.launch(game="solo")


def test_a_card_without_an_active_version(world: World, make_card: Callable[..., GameCard]) -> None:
    make_card("old", platform="docker", versions=[{"version": "1.0.0", "image": "o:1", "status": "deprecated"}])
    with pytest.raises(Conflict, match="no active version"):
        world.launch(game="old")


def test_the_image_param_may_repeat_the_versions_image(world: World) -> None:
    world.launch(version="1.0.0", params={"image": "reg/quake:1.0.0"})
    assert world.runs.calls[0].params["image"] == "reg/quake:1.0.0"


def test_request_platform_overrides_the_cards(world: World, make_platform: Callable[..., Platform]) -> None:
    make_platform("k8s", pipeline="k8s-start", params={"port": 1})
    world.launch(platform="k8s", version="1.1.0")
    assert (world.runs.calls[0].pipeline, world.runs.calls[0].params["port"]) == ("k8s-start", 1)


def test_a_named_node_is_used_and_checked(world: World) -> None:
    assert world.launch(node_id="n2").node_id == "n2"
    world.online.discard("n2")
    with pytest.raises(Conflict, match=r"node 'n2' cannot take quake 1\.1\.0 on platform docker: online but its agent"):
        world.launch(node_id="n2")


def test_no_fit_says_why_for_each_node(world: World) -> None:
    for _ in range(2):
        world.launch(version="1.1.0", policy="pack")  # 2 CPU each: n-first fills up
    with pytest.raises(Conflict) as err:
        world.launch(version="1.1.0", node_id=None, selector="region=eu")
    assert "n1: needs 2 CPU (0 free)" in err.value.message
    assert "n2: label region is us (selector wants region=eu)" in err.value.message
    assert [d.path for d in err.value.details] == ["n1", "n2"]


def test_a_run_that_cannot_start_takes_its_instance_with_it(world: World) -> None:
    world.runs.fail = InvalidInput("params.port: not an integer")
    with pytest.raises(InvalidInput, match=r"params\.port"):
        world.launch()
    assert world.services.instances.list_instances().total == 0
    assert world.services.instances.reserved("n1") == Resources()


# --- stop ---------------------------------------------------------------------


def test_stop_runs_the_stop_pipeline(world: World) -> None:
    instance = world.running()
    stopped = world.launcher.stop(instance.id, created_by="bob")
    assert stopped.run_id == "run-1" and not stopped.deleted
    assert stopped.instance.state == S.STOPPING
    call = world.runs.calls[-1]
    assert (call.pipeline, call.instance_id, call.node_id, call.created_by) == (
        "platform-stop", instance.id, instance.node_id, "bob")
    assert call.params == {"container": "c-1"}  # the container it runs now (after an upgrade: not gn-<id>)


def test_stop_uses_the_platforms_stop_pipeline(world: World) -> None:
    world.services.platforms.set_config("docker", {"stop_pipeline": "custom-stop"})
    world.launcher.stop(world.running().id)
    assert world.runs.calls[-1].pipeline == "custom-stop"


@pytest.mark.parametrize("final", [S.STOPPED, S.FAILED])
def test_stopping_a_finished_instance_just_deletes_it(world: World, final: InstanceState) -> None:
    instance = world.running()
    world.services.instances.transition(instance.id, S.FAILED if final == S.FAILED else S.STOPPING)
    if final == S.STOPPED:
        world.services.instances.transition(instance.id, S.STOPPED)
    calls = len(world.runs.calls)
    stopped = world.launcher.stop(instance.id)
    assert stopped.deleted and stopped.run_id is None
    assert len(world.runs.calls) == calls
    with pytest.raises(NotFound):
        world.services.instances.get_instance(instance.id)


def test_stop_on_an_offline_node_needs_force(world: World) -> None:
    instance = world.running()
    world.online.discard(instance.node_id)
    with pytest.raises(Conflict, match=r"offline.*force"):
        world.launcher.stop(instance.id)
    stopped = world.launcher.stop(instance.id, force=True)
    assert stopped.instance.state == S.STOPPED and stopped.run_id is None and not stopped.deleted
    assert world.services.instances.reserved(instance.node_id) == Resources()
    assert len(world.runs.calls) == 1  # the launch only


@pytest.mark.parametrize("state", [S.PENDING, S.PREPARING, S.STARTING])
def test_stopping_an_instance_still_coming_up_cancels_its_start_run(world: World, state: InstanceState) -> None:
    instance = world.launch()
    for step in (S.PREPARING, S.STARTING)[: [S.PENDING, S.PREPARING, S.STARTING].index(state)]:
        world.services.instances.transition(instance.id, step)
    stopped = world.launcher.stop(instance.id, created_by="bob")
    assert stopped.run_id == instance.run_id and stopped.instance.state == state
    assert world.runs.cancels == [(instance.run_id, "instance stopped by bob", "bob")]
    assert len(world.runs.calls) == 1  # no stop pipeline


def test_an_instance_whose_start_run_ended_gets_the_stop_pipeline(world: World) -> None:
    instance = world.launch()
    assert instance.run_id is not None
    world.runs.finish(instance.run_id, RunState.FAILED)  # the hub has not heard of the instance yet
    stopped = world.launcher.stop(instance.id)
    assert stopped.run_id == "run-1" and world.runs.cancels == []


def test_force_cancels_a_start_run_for_when_the_agent_comes_back(world: World) -> None:
    instance = world.launch()
    world.online.discard(instance.node_id)
    stopped = world.launcher.stop(instance.id, force=True, created_by="bob")
    assert stopped.instance.state == S.STOPPED
    assert world.runs.cancels == [(instance.run_id, "instance stopped with force by bob", "bob")]


def test_force_finishes_a_stop_already_under_way(world: World) -> None:
    instance = world.running()
    world.launcher.stop(instance.id)
    world.online.discard(instance.node_id)
    assert world.launcher.stop(instance.id, force=True).instance.state == S.STOPPED


def test_force_on_an_online_node_still_asks_the_node(world: World) -> None:
    stopped = world.launcher.stop(world.running().id, force=True)
    assert stopped.run_id is not None and stopped.instance.state == S.STOPPING


def test_stop_unknown_instance(world: World) -> None:
    with pytest.raises(NotFound):
        world.launcher.stop("ghost")


# --- container actions ------------------------------------------------------------


@pytest.mark.parametrize("action", ["stop", "remove"])
async def test_stop_and_remove_release_the_instance(world: World, action: str) -> None:
    instance = world.running()
    after = await world.launcher.action(instance.id, action)
    assert after.state == S.STOPPED
    assert world.agent.calls == [(instance.node_id, ContainerAction(action), instance.id, "c-1")]
    assert world.services.instances.reserved(instance.node_id) == Resources()


async def test_restart_keeps_it_running(world: World) -> None:
    instance = world.running()
    after = await world.launcher.action(instance.id, ContainerAction.RESTART)
    assert after.state == S.RUNNING
    assert world.agent.calls[0][1] == ContainerAction.RESTART


async def test_remove_of_a_stopped_instance_changes_nothing(world: World) -> None:
    instance = world.running()
    await world.launcher.action(instance.id, "stop")
    after = await world.launcher.action(instance.id, "remove")
    assert after.state == S.STOPPED and len(world.agent.calls) == 2


async def test_action_refusals(world: World) -> None:
    instance = world.running()
    with pytest.raises(InvalidInput, match="action: must be one of stop, restart, remove"):
        await world.launcher.action(instance.id, "explode")
    world.agent.result = CommandResult(ok=False, error="no such container")
    with pytest.raises(Conflict, match=r"refused to stop instance .*: no such container"):
        await world.launcher.action(instance.id, "stop")
    assert world.services.instances.get_instance(instance.id).state == S.RUNNING
    world.online.discard(instance.node_id)
    with pytest.raises(Conflict, match="is offline"):
        await world.launcher.action(instance.id, "stop")


async def test_action_times_out(world: World) -> None:
    instance = world.running()
    world.agent.hang = True
    with pytest.raises(TimedOut, match="did not answer the restart"):
        await world.launcher.action(instance.id, "restart")


async def test_restart_needs_a_running_instance_and_stop_a_live_one(world: World) -> None:
    instance = world.launch()
    with pytest.raises(Conflict, match="only a running instance restarts"):
        await world.launcher.action(instance.id, "restart")
    await world.launcher.action(instance.id, "stop")
    with pytest.raises(Conflict, match="already stopped"):
        await world.launcher.action(instance.id, "stop")


async def test_action_without_an_agent_link(world: World) -> None:
    launcher = LaunchService.over(world.services, world.runs, world.online.__contains__)
    with pytest.raises(Conflict, match="offline"):
        await launcher.action(world.running().id, "stop")


# --- with the real run service ------------------------------------------------------


class FakeDispatcher:
    def __init__(self, online: set[str]) -> None:
        self.online = online
        self.sent: list[tuple[str, dict[str, Any]]] = []
        self.cancelled: list[str] = []

    def connected(self, node_id: str) -> bool:
        return node_id in self.online

    def run_pipeline(self, run: Any, params: dict[str, Any]) -> None:
        self.sent.append((run.id, params))

    def cancel_run(self, run: Any, reason: str) -> None:
        self.cancelled.append(run.id)


def test_launch_and_stop_through_the_run_service(world: World) -> None:
    dispatcher = FakeDispatcher(world.online)
    world.services.runs.dispatcher = dispatcher
    launcher = LaunchService.over(world.services, world.services.runs, world.online.__contains__)

    launched = launcher.launch(LaunchRequest(game="quake", version="1.0.0"), created_by="alice")
    run = world.services.runs.get_run(launched.run_id)
    assert run.instance_id == launched.instance.id and run.pipeline == "platform-start"
    assert launched.instance.run_id == run.id and launched.instance.params["registry_password"] == "***"
    assert world.services.instances.list_instances().total == 1  # the run adopted the launch's instance
    [(sent_id, params)] = dispatcher.sent
    assert sent_id == run.id and params["image"] == "reg/quake:1.0.0" and params["registry_password"] == "s3cret"

    stopped = launcher.stop(launched.instance.id, created_by="bob")  # still starting: its run is cancelled
    assert stopped.run_id == run.id and dispatcher.cancelled == [run.id]

    with pytest.raises(InvalidInput, match="unknown param"):
        launcher.launch(LaunchRequest(game="quake", params={"bogus": 1}))
    assert world.services.instances.list_instances().total == 1
