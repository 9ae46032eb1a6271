"""InstanceService: game instances, their states and the resources they hold.

Instance states:

    pending → preparing → starting → running → stopping → stopped
       │          │           │          │          │
       └──────────┴───────────┴──────────┴──────────┴──► failed

`pending`, `preparing` and `starting` may also go straight to `stopping`
(a run cancelled before the game came up). `stopped` and `failed` are final.
A live instance (any state but stopped and failed) holds its resources on its
node; creating one is refused when the node's capacity would be exceeded.

Reconciling with an agent's report of its containers (`reconcile`):

- a `running` instance whose container has exited (or is dead) becomes
  `failed` with "container exited with code N" (and docker's error);
- a `running` instance missing from a full report becomes `failed` with
  "container is gone";
- a `starting` instance whose container is reported running becomes `running`
  (and a running one takes the reported container id if it changed);
- ids the hub does not know on that node are ignored (logged at debug level);
  instances in any other state, stopped and failed ones above all, are left
  to the runs that drive them.
"""

from __future__ import annotations

import logging
import secrets
import threading
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from pydantic import Field

from console.errors import Conflict, InvalidInput
from console.models import (
    GameCardStatus,
    GameNode,
    Instance,
    InstanceState,
    Model,
    NodeStatus,
    PlatformState,
    PortMapping,
    Resources,
    utcnow,
)
from console.service.gamecards import default_version
from console.service.query import Page, paginate, sort_records
from console.store import GameCardStore, InstanceStore, NodeStore, PlatformStore
from console.validation import validate

__all__ = [
    "TRANSITIONS",
    "ContainerReport",
    "ContainerStatus",
    "InstanceQuery",
    "InstanceService",
    "InstanceSpec",
    "node_capacity",
]

log = logging.getLogger(__name__)

S = InstanceState
TRANSITIONS: dict[InstanceState, frozenset[InstanceState]] = {
    S.PENDING: frozenset({S.PREPARING, S.STOPPING, S.FAILED}),
    S.PREPARING: frozenset({S.STARTING, S.STOPPING, S.FAILED}),
    S.STARTING: frozenset({S.RUNNING, S.STOPPING, S.FAILED}),
    S.RUNNING: frozenset({S.STOPPING, S.FAILED}),
    S.STOPPING: frozenset({S.STOPPED, S.FAILED}),
    S.STOPPED: frozenset(),
    S.FAILED: frozenset(),
}

SORT_FIELDS = frozenset({"id", "node_id", "game", "platform", "state", "created_at", "updated_at"})


class InstanceSpec(Model):
    """What a caller gives to create an instance; the rest is derived."""

    id: str | None = None
    """Generated (`inst-<hex>`) when not given."""
    node_id: str
    game: str | None = None
    game_version: str | None = None
    """Defaults to the game card's default version."""
    platform: str | None = None
    """Defaults to the game card's platform."""
    run_id: str | None = None
    ports: list[PortMapping] = Field(default_factory=list)
    resources: Resources | None = None
    """Defaults to the game version's resource requirements."""
    params: dict[str, Any] = Field(default_factory=dict)


class InstanceQuery(Model):
    node_id: str | None = None
    state: InstanceState | None = None
    game: str | None = None
    platform: str | None = None
    live: bool | None = None
    sort: str = "id"
    limit: int | None = Field(default=None, ge=0)
    offset: int = Field(default=0, ge=0)


class ContainerStatus(Protocol):
    """What an agent reports of one gamenode container (the hub converts `pb.InstanceStatus` to this)."""

    @property
    def instance_id(self) -> str: ...
    @property
    def container_id(self) -> str: ...
    @property
    def state(self) -> str:
        """Docker's container state: `running`, `exited`, `dead`, `created`, `restarting`, `paused`, ..."""
    @property
    def exit_code(self) -> int: ...
    @property
    def error(self) -> str:
        """Docker's error text for a container that failed to start or died; "" when none."""


@dataclass(frozen=True, slots=True)
class ContainerReport:
    """A plain `ContainerStatus`."""

    instance_id: str
    container_id: str = ""
    state: str = ""
    exit_code: int = 0
    error: str = ""


EXITED_STATES = frozenset({"exited", "dead"})


def node_capacity(node: GameNode) -> Resources:
    """What a node offers, from its hardware inventory.

    CPU: `hardware.cpu.cores` (or `hardware.cpu_cores`); memory:
    `hardware.memory_mb`; GPUs: `len(hardware.gpus)` (or `hardware.gpu_count`).
    """
    hw = node.hardware
    cpu = hw.get("cpu")
    cores = cpu.get("cores") if isinstance(cpu, dict) else hw.get("cpu_cores")
    gpus = hw.get("gpus")
    gpu = len(gpus) if isinstance(gpus, list) else hw.get("gpu_count")
    return Resources(
        cpu=_number(cores), memory_mb=int(_number(hw.get("memory_mb"))), gpu=int(_number(gpu))
    )


def _number(value: Any) -> float:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) and value > 0 else 0.0


class InstanceService:
    def __init__(
        self,
        instances: InstanceStore,
        nodes: NodeStore,
        gamecards: GameCardStore,
        platforms: PlatformStore,
        clock: Callable[[], datetime] = utcnow,
        lock: threading.RLock | None = None,
    ) -> None:
        self.instances = instances
        self.nodes = nodes
        self.gamecards = gamecards
        self.platforms = platforms
        self.clock = clock
        self._lock = lock or threading.RLock()
        """Held across check-and-write of anything that spans records (see `Services`)."""

    @property
    def lock(self) -> threading.RLock:
        """The lock shared by the services: hold it across a check and the writes it allows."""
        return self._lock

    # --- queries ------------------------------------------------------------

    def list_instances(self, query: InstanceQuery | None = None) -> Page[Instance]:
        q = query or InstanceQuery()
        keys = sort_records(q.sort, SORT_FIELDS)

        def wanted(i: Instance) -> bool:
            return (
                (q.node_id is None or i.node_id == q.node_id)
                and (q.state is None or i.state == q.state)
                and (q.game is None or i.game == q.game)
                and (q.platform is None or i.platform == q.platform)
                and (q.live is None or i.state.live == q.live)
            )

        return paginate(keys([i for i in self.instances.list() if wanted(i)]), q.limit, q.offset)

    def get_instance(self, id: str) -> Instance:
        return self.instances.get(id)

    def reserved(self, node_id: str) -> Resources:
        """What the live instances on a node hold."""
        total = Resources()
        for i in self.instances.on_node(node_id):
            if i.state.live:
                total = total + i.resources
        return total

    def free(self, node_id: str) -> Resources:
        cap, used = node_capacity(self.nodes.get(node_id)), self.reserved(node_id)
        return Resources(
            cpu=max(cap.cpu - used.cpu, 0), memory_mb=max(cap.memory_mb - used.memory_mb, 0),
            gpu=max(cap.gpu - used.gpu, 0),
        )

    # --- changes ------------------------------------------------------------

    def create_instance(self, spec: InstanceSpec | dict[str, Any]) -> Instance:
        if isinstance(spec, dict):
            spec = validate(InstanceSpec, spec, "instance")
        with self._lock:
            node = self.nodes.get(spec.node_id)
            if node.status == NodeStatus.MAINTENANCE:
                raise Conflict(f"node {node.id!r} is in maintenance and takes no new instances")
            fields = self._resolve_game(spec)
            platform = fields.get("platform")
            if platform:
                self._check_platform(node, platform)
            now = self.clock()
            instance = validate(Instance, {
                **spec.model_dump(exclude_none=True), **fields,
                "id": spec.id or f"inst-{secrets.token_hex(6)}",
                "state": InstanceState.PENDING, "created_at": now, "updated_at": now,
            }, "instance")
            self._check_fits(node, instance.resources)
            return self.instances.add(instance)

    def transition(self, id: str, state: InstanceState | str, error: str | None = None,
                   container_id: str | None = None) -> Instance:
        """Move an instance to `state`; leaving the live states releases its resources."""
        try:
            new = InstanceState(state)
        except ValueError:
            raise InvalidInput(
                f"state: must be one of {', '.join(s.value for s in InstanceState)} (got {state!r})"
            ) from None

        def change(old: Instance) -> Instance:
            if new == old.state:
                return old
            if new not in TRANSITIONS[old.state]:
                allowed = ", ".join(sorted(s.value for s in TRANSITIONS[old.state])) or "nothing (final)"
                raise Conflict(f"instance {id!r} cannot go from {old.state.value} to {new.value} "
                               f"(from {old.state.value} it can go to: {allowed})")
            now = self.clock()
            update: dict[str, Any] = {"state": new, "updated_at": now}
            if new == S.RUNNING:
                update["started_at"] = now
            if not new.live:
                update["stopped_at"] = now
            if new == S.FAILED:
                update["error"] = error or "failed"
            if container_id is not None:
                update["container_id"] = container_id
            return validate(Instance, {**old.model_dump(), **update}, "instance")

        with self._lock:
            return self.instances.mutate(id, change)

    def update_instance(self, id: str, changes: dict[str, Any]) -> Instance:
        """Change the container id, ports, run id or params of a live instance."""
        allowed = {"container_id", "ports", "run_id", "params"}
        unknown = sorted(set(changes) - allowed)
        if unknown:
            raise InvalidInput(f"{', '.join(unknown)}: cannot be changed here (only {', '.join(sorted(allowed))})")

        def change(old: Instance) -> Instance:
            if not old.state.live:
                raise Conflict(f"instance {id!r} is {old.state.value}; it can no longer change")
            return validate(Instance, {**old.model_dump(), **changes, "updated_at": self.clock()}, "instance")

        return self.instances.mutate(id, change)

    def delete_instance(self, id: str) -> Instance:
        instance = self.instances.get(id)
        if instance.state.live:
            raise Conflict(f"instance {id!r} is {instance.state.value}; stop it before deleting it")
        return self.instances.delete(id)

    # --- following the containers -----------------------------------------

    def reconcile(
        self, node_id: str, statuses: Sequence[ContainerStatus], full: bool = False, busy: Collection[str] = ()
    ) -> list[Instance]:
        """Bring the node's instances in line with its agent's container report; the instances changed.

        `full`: `statuses` lists every gamenode container on the node, so a
        running instance missing from it has lost its container. `busy`: instances
        left alone, because a run is changing their containers on purpose (an
        upgrade stops the old one; a stop pipeline removes it).
        """
        changed: list[Instance] = []
        with self._lock:
            for status in statuses:
                instance = self.instances.find(status.instance_id)
                if instance is None or instance.node_id != node_id:
                    log.debug("node %s reports a container for instance %r, unknown on that node",
                              node_id, status.instance_id)
                    continue
                if instance.id not in busy and (new := self._follow(instance, status)) is not None:
                    changed.append(new)
            if full:
                reported = {s.instance_id for s in statuses}
                for instance in self.instances.on_node(node_id):
                    if instance.state == S.RUNNING and instance.id not in reported and instance.id not in busy:
                        changed.append(self.transition(instance.id, S.FAILED, "container is gone"))
        return changed

    def _follow(self, instance: Instance, status: ContainerStatus) -> Instance | None:
        """The change one container's status makes to its instance, written; None when none."""
        container_id = status.container_id or None
        own = not instance.container_id or not container_id or _same_container(instance.container_id, container_id)
        if instance.state == S.RUNNING and status.state in EXITED_STATES and own:
            error = f"container exited with code {status.exit_code}" + (f": {status.error}" if status.error else "")
            return self.transition(instance.id, S.FAILED, error, container_id)
        if instance.state == S.STARTING and status.state == "running":
            return self.transition(instance.id, S.RUNNING, container_id=container_id)
        if (instance.state == S.RUNNING and status.state == "running" and container_id
                and not _same_container(container_id, instance.container_id or "")):
            return self.update_instance(instance.id, {"container_id": container_id})
        return None

    # --- internals ----------------------------------------------------------

    def _resolve_game(self, spec: InstanceSpec) -> dict[str, Any]:
        """Fill version, platform and resources from the game card."""
        out: dict[str, Any] = {"resources": spec.resources or Resources(), "platform": spec.platform}
        if spec.game is None:
            if spec.game_version is not None:
                raise InvalidInput("game_version: given without a game")
            return out
        card = self.gamecards.get(spec.game)
        version = next((v for v in card.versions if v.version == spec.game_version), None) if spec.game_version \
            else default_version(card)
        if version is None:
            wanted = spec.game_version or "a default version"
            raise Conflict(f"game card {card.id!r} has no {wanted!r}" if spec.game_version
                           else f"game card {card.id!r} has no active version to use as {wanted}")
        if version.status == GameCardStatus.DEPRECATED:
            raise Conflict(f"game {card.id!r} version {version.version} is deprecated; pick an active version")
        out.update(game_version=version.version, resources=spec.resources or version.resources,
                   platform=spec.platform or card.platform)
        return out

    def _check_platform(self, node: GameNode, platform_id: str) -> None:
        platform = self.platforms.get(platform_id)
        if platform.state == PlatformState.DISABLED:
            raise Conflict(f"platform {platform.id!r} is disabled")
        missing = {k: v for k, v in platform.required_labels.items() if node.labels.get(k) != v}
        if missing:
            need = ", ".join(f"{k}={v}" for k, v in sorted(missing.items()))
            raise Conflict(f"node {node.id!r} lacks the labels platform {platform.id!r} requires: {need}")

    def _check_fits(self, node: GameNode, need: Resources) -> None:
        cap, used = node_capacity(node), self.reserved(node.id)
        if (used + need).fits_in(cap):
            return
        short = []
        if used.cpu + need.cpu > cap.cpu + 1e-9:
            short.append(f"CPU {need.cpu:g} cores wanted, {max(cap.cpu - used.cpu, 0):g} of {cap.cpu:g} free")
        if used.memory_mb + need.memory_mb > cap.memory_mb:
            short.append(f"memory {need.memory_mb} MB wanted, "
                         f"{max(cap.memory_mb - used.memory_mb, 0)} of {cap.memory_mb} MB free")
        if used.gpu + need.gpu > cap.gpu:
            short.append(f"GPU {need.gpu} wanted, {max(cap.gpu - used.gpu, 0)} of {cap.gpu} free")
        raise Conflict(f"node {node.id!r} has not enough room: {'; '.join(short)}")


def _same_container(a: str, b: str) -> bool:
    """Docker ids, full or abbreviated (12 hex digits), name the same container when one starts the other."""
    return bool(a and b) and (a.startswith(b) or b.startswith(a))
