"""LaunchService: start a game on the fleet, stop it, act on its container.

Launching (`launch`):

1. the game card (404 when unknown), its version (the card's default when not
   given; 404 when the card has no such version, 409 when it is deprecated or
   the card has no active version) and its platform (the card's when not
   given; 409 when disabled);
2. the pipeline params: the platform's params, overridden by the version's,
   overridden by the request's; `image` is always the version's image;
3. a node (see `console.service.placement` for the rules and policies); a
   request naming its node skips the choice, not the checks;
4. the instance, reserving the version's resources on that node. Steps 3 and
   4 hold the services' shared lock, so concurrent launches never overbook;
5. the platform's start pipeline (`Platform.pipeline`) through the run
   service, for that instance. When the run cannot start, the instance is
   removed again and the error is the answer.

Stopping (`stop`): an instance already stopped or failed is just deleted. One
still coming up (pending, preparing, starting) whose start run is in progress
has that run cancelled: its cleanup removes what it made and the instance ends
failed ("cancelled ..."), released. Any other live one runs the platform's
stop pipeline (`config.stop_pipeline`, default `platform-stop`) and is
stopping until that run succeeds, then stopped and released. The stop
pipeline gets param `container` = the instance's container id when the hub
knows it (after an upgrade it is not `gn-<instance id>`), so a stop pipeline
declares that param (see `config/pipeline/platform-stop.yaml`). When its node
is offline all this is refused (409) unless `force`: then the instance is
marked stopped and released without the agent (a start run still in progress
is cancelled too, for when the agent comes back; a container, if any, is left
to the node).

Container actions (`action`): `stop`, `restart`, `remove` are sent to the
node's agent, which must ack within the timeout (504 otherwise; 409 when the
node is offline or the agent refuses, with its reason). Stop and remove leave
the instance stopped and released; restart leaves it running.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING, Any, Protocol

from pydantic import Field

from console.errors import Conflict, GamenodeError, InvalidInput, NotFound, TimedOut
from console.models import (
    GameCard,
    GameCardStatus,
    GameVersion,
    Instance,
    InstanceState,
    Model,
    PipelineRun,
    Platform,
    PlatformState,
    Resources,
)
from console.service.gamecards import GameCardService, default_version
from console.service.instances import InstanceService, InstanceSpec
from console.service.placement import Placement, PlacementRequest, Policy
from console.service.platforms import PlatformService
from console.service.selector import Selector

if TYPE_CHECKING:
    from console.service import Services

__all__ = [
    "ACTION_TIMEOUT",
    "DEFAULT_STOP_PIPELINE",
    "CommandResult",
    "ContainerAction",
    "ContainerAgent",
    "LaunchRequest",
    "LaunchService",
    "Launched",
    "Runs",
    "Stopped",
]

DEFAULT_STOP_PIPELINE = "platform-stop"
ACTION_TIMEOUT = 30.0
"""Seconds an agent has to ack a container action."""

S = InstanceState


class ContainerAction(StrEnum):
    STOP = "stop"
    RESTART = "restart"
    REMOVE = "remove"


class LaunchRequest(Model):
    """Start a game somewhere on the fleet."""

    game: str
    """Game card id."""
    version: str | None = None
    """The card's default version when not given."""
    platform: str | None = None
    """The card's platform when not given."""
    selector: str | None = None
    """Label selector the node must match, e.g. `region=eu,tier in (gold,silver)`."""
    policy: Policy = Policy.SPREAD
    params: dict[str, Any] = Field(default_factory=dict)
    """Pipeline params; they override the platform's and the version's."""
    node_id: str | None = None
    """Run it on this node (it must still pass the checks) instead of placing it."""


class Launched(Model):
    """A launched instance and the run that starts it."""

    instance: Instance
    run_id: str


class Stopped(Model):
    """What stopping an instance did: a stop run, a forced stop, or (record only) a deletion."""

    instance: Instance
    run_id: str | None = None
    """The stop run; None when nothing runs on the node."""
    deleted: bool = False
    """The instance was already stopped or failed, and its record is gone."""


class Runs(Protocol):
    """The part of `RunService` launching and stopping use."""

    def start(
        self, node_id: str, *, pipeline: str | None, pipeline_yaml: str | None, params: dict[str, Any],
        instance_id: str | None = None, resources: Resources | None = None, created_by: str = "",
    ) -> PipelineRun: ...

    def get_run(self, run_id: str) -> PipelineRun: ...

    def cancel(self, run_id: str, reason: str = "", actor: str = "api") -> PipelineRun: ...


@dataclass(frozen=True, slots=True)
class CommandResult:
    """An agent's ack of a command."""

    ok: bool
    error: str = ""


class ContainerAgent(Protocol):
    """Sends container actions to node agents (the hub's session registry, converted at the edge)."""

    async def container_action(
        self, node_id: str, action: ContainerAction, instance_id: str, container_id: str
    ) -> CommandResult: ...


class LaunchService:
    """Places, starts and stops game instances; writes through the instance and run services only."""

    def __init__(
        self, instances: InstanceService, gamecards: GameCardService, platforms: PlatformService,
        runs: Runs, is_online: Callable[[str], bool] | None = None,
        agent: ContainerAgent | None = None, action_timeout: float = ACTION_TIMEOUT,
    ) -> None:
        self.instances = instances
        self.gamecards = gamecards
        self.platforms = platforms
        self.runs = runs
        self.agent = agent
        self.action_timeout = action_timeout
        self.placement = Placement(instances.nodes, instances.instances, is_online)

    @classmethod
    def over(
        cls, services: Services, runs: Runs, is_online: Callable[[str], bool] | None = None,
        agent: ContainerAgent | None = None,
    ) -> LaunchService:
        return cls(services.instances, services.gamecards, services.platforms, runs, is_online, agent)

    def is_online(self, node_id: str) -> bool:
        check = self.placement.is_online
        return check(node_id) if check is not None else self.instances.nodes.get(node_id).online

    # --- launch ---------------------------------------------------------------

    def launch(self, request: LaunchRequest, created_by: str = "") -> Launched:
        """Place the game, reserve its resources, start its platform's pipeline."""
        card = self.gamecards.get_card(request.game)
        version = _version(card, request.version)
        platform = self._platform(card, request.platform)
        params = _params(platform, version, request.params)
        placing = PlacementRequest(
            need=version.resources, platform=platform, selector=Selector.parse(request.selector),
            policy=request.policy, node_id=request.node_id,
            what=f"{card.id} {version.version} on platform {platform.id}",
        )
        with self.instances.lock:
            node = self.placement.place(placing).node
            instance = self.instances.create_instance(InstanceSpec(
                node_id=node.id, game=card.id, game_version=version.version, platform=platform.id,
                resources=version.resources,
            ))
        return self._start(instance, platform.pipeline, params, created_by)

    def _start(self, instance: Instance, pipeline: str, params: dict[str, Any], created_by: str) -> Launched:
        try:
            run = self.runs.start(instance.node_id, pipeline=pipeline, pipeline_yaml=None, params=params,
                                  instance_id=instance.id, resources=instance.resources, created_by=created_by)
        except GamenodeError as exc:
            self._discard(instance.id, exc)
            raise
        instance = self.instances.update_instance(instance.id, {"run_id": run.id, "params": dict(run.params)})
        return Launched(instance=instance, run_id=run.id)

    def _discard(self, instance_id: str, exc: GamenodeError) -> None:
        """An instance whose run could not start: failed (releasing it), then gone."""
        self.instances.transition(instance_id, S.FAILED, f"its pipeline did not start: {exc.message}")
        self.instances.delete_instance(instance_id)

    def _platform(self, card: GameCard, wanted: str | None) -> Platform:
        platform_id = wanted or card.platform
        if platform_id is None:
            raise InvalidInput(f"platform: game card {card.id!r} names no platform; give one")
        platform = self.platforms.get_platform(platform_id)
        if platform.state == PlatformState.DISABLED:
            raise Conflict(f"platform {platform.id!r} is disabled")
        return platform

    # --- stop -----------------------------------------------------------------

    def stop(self, instance_id: str, force: bool = False, created_by: str = "") -> Stopped:
        """Stop an instance through its node; see the module docstring for every case."""
        instance = self.instances.get_instance(instance_id)
        if not instance.state.live:
            return Stopped(instance=self.instances.delete_instance(instance_id), deleted=True)
        actor = created_by or "api"
        starting = self._start_in_progress(instance)
        if not self.is_online(instance.node_id):
            if not force:
                raise Conflict(f"node {instance.node_id!r} is offline, so instance {instance_id!r} cannot be "
                               "stopped there; stop it with force to release it without the node")
            if starting is not None:  # for when the agent comes back
                self.runs.cancel(starting.id, f"instance stopped with force by {actor}", actor)
            return Stopped(instance=self._mark_stopped(instance_id))
        if starting is not None:
            self.runs.cancel(starting.id, f"instance stopped by {actor}", actor)
            return Stopped(instance=self.instances.get_instance(instance_id), run_id=starting.id)
        return self._run_stop_pipeline(instance, created_by)

    def _run_stop_pipeline(self, instance: Instance, created_by: str) -> Stopped:
        params = {"container": instance.container_id} if instance.container_id else {}
        run = self.runs.start(instance.node_id, pipeline=self._stop_pipeline(instance), pipeline_yaml=None,
                              params=params, instance_id=instance.id, created_by=created_by)
        with self.instances.lock:  # unless the run has finished already
            if self.instances.get_instance(instance.id).state not in (S.STOPPING, S.STOPPED, S.FAILED):
                self.instances.transition(instance.id, S.STOPPING)
        return Stopped(instance=self.instances.get_instance(instance.id), run_id=run.id)

    def _start_in_progress(self, instance: Instance) -> PipelineRun | None:
        """The run still bringing a pending, preparing or starting instance up; None when there is none."""
        if instance.state not in (S.PENDING, S.PREPARING, S.STARTING) or instance.run_id is None:
            return None
        try:
            run = self.runs.get_run(instance.run_id)
        except NotFound:
            return None
        return None if run.state.finished or run.instance_id != instance.id else run

    def _stop_pipeline(self, instance: Instance) -> str:
        if instance.platform is None:
            return DEFAULT_STOP_PIPELINE
        try:
            platform = self.platforms.get_platform(instance.platform)
        except NotFound:
            return DEFAULT_STOP_PIPELINE
        name = platform.config.get("stop_pipeline")
        return name if isinstance(name, str) and name else DEFAULT_STOP_PIPELINE

    def _mark_stopped(self, instance_id: str) -> Instance:
        """Live → stopping → stopped: the instance releases its resources."""
        with self.instances.lock:
            if self.instances.get_instance(instance_id).state != S.STOPPING:
                self.instances.transition(instance_id, S.STOPPING)
            return self.instances.transition(instance_id, S.STOPPED)

    # --- container actions ----------------------------------------------------

    async def action(self, instance_id: str, action: ContainerAction | str) -> Instance:
        """Stop, restart or remove the instance's container through its node's agent."""
        what = _action(action)
        instance = self.instances.get_instance(instance_id)
        _check_action(instance, what)
        if self.agent is None or not self.is_online(instance.node_id):
            raise Conflict(f"node {instance.node_id!r} is offline; cannot {what.value} instance {instance_id!r}")
        send = self.agent.container_action(instance.node_id, what, instance_id, instance.container_id or "")
        try:
            result = await asyncio.wait_for(send, self.action_timeout)
        except TimeoutError:
            raise TimedOut(f"node {instance.node_id!r} did not answer the {what.value} of instance "
                           f"{instance_id!r} within {self.action_timeout:g} s") from None
        if not result.ok:
            raise Conflict(f"node {instance.node_id!r} refused to {what.value} instance {instance_id!r}: "
                           f"{result.error or 'no reason given'}")
        if what == ContainerAction.RESTART or not instance.state.live:
            return self.instances.get_instance(instance_id)
        return await asyncio.to_thread(self._mark_stopped, instance_id)


# --- helpers ---------------------------------------------------------------------


def _version(card: GameCard, wanted: str | None) -> GameVersion:
    if wanted is None:
        version = default_version(card)
        if version is None:
            raise Conflict(f"game card {card.id!r} has no active version to launch")
    else:
        found = next((v for v in card.versions if v.version == wanted), None)
        if found is None:
            raise NotFound("game version", f"{card.id}@{wanted}")
        version = found
    if version.status == GameCardStatus.DEPRECATED:
        raise Conflict(f"game {card.id!r} version {version.version} is deprecated; pick an active version")
    return version


def _params(platform: Platform, version: GameVersion, given: dict[str, Any]) -> dict[str, Any]:
    """Platform params < version params < request params; the image is the version's."""
    if "image" in given and given["image"] != version.image:
        raise InvalidInput(f"params.image: set by the game version ({version.image}); pick another version instead")
    return {**platform.params, **version.params, **given, "image": version.image}


def _action(action: ContainerAction | str) -> ContainerAction:
    try:
        return ContainerAction(action)
    except ValueError:
        choices = ", ".join(a.value for a in ContainerAction)
        raise InvalidInput(f"action: must be one of {choices} (got {action!r})") from None


def _check_action(instance: Instance, action: ContainerAction) -> None:
    if action == ContainerAction.RESTART and instance.state != S.RUNNING:
        raise Conflict(f"instance {instance.id!r} is {instance.state.value}; only a running instance restarts")
    if action == ContainerAction.STOP and not instance.state.live:
        raise Conflict(f"instance {instance.id!r} is already {instance.state.value}")
