"""Placement: which node a new game instance goes to.

A node can take an instance of platform P that needs resources R when, checked
in this order (the first check a node fails is the reason it is rejected):

1. its status is `ready` or `online` (not `maintenance`, not `offline`);
2. its agent is connected (`is_online(node_id)`: the hub's session registry;
   without one, the node's stored `online` flag);
3. it carries every label in P's `required_labels`, with the same values;
4. its labels match the request's label selector, if one is given
   (`console.service.selector`);
5. its free capacity covers R in CPU, memory and GPUs: free = the capacity of
   its hardware inventory (`node_capacity`) minus what its live instances
   (any state but stopped and failed) reserve.

The policy orders the nodes that fit:

- `spread` (the default): most free capacity first; ties by fewest live
  instances, then by node id;
- `pack`: least free capacity (that still fits) first; ties by most live
  instances, then by node id.

"Free capacity" is the node's free share after placing R: the mean, over CPU
and memory (and GPUs when R asks for any), of (free - needed) / capacity. A
half-busy 64-core node and a half-busy 8-core node count alike, so spread
balances load and pack fills nodes one after another.

When no node fits, the answer is a `Conflict` that says, for each node, why it
was rejected — those that came closest first (short of room before a selector
mismatch before a missing label before offline) — at most `MESSAGE_REASONS` in
the message and `DETAIL_REASONS` in `details` (path = node id), with a count of
the rest. A request naming its node skips the choice but not the checks.

Placement only reads the stores. Placing and reserving (creating the instance)
must happen under the services' shared lock, held across both, so that two
launches never overbook a node (see `console.service.launch`).
"""

from __future__ import annotations

import builtins
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import IntEnum, StrEnum
from typing import Protocol

from console.errors import Conflict, FieldError
from console.models import GameNode, Instance, NodeStatus, Platform, Resources
from console.service.instances import node_capacity
from console.service.selector import Selector

__all__ = [
    "DETAIL_REASONS",
    "MESSAGE_REASONS",
    "Fit",
    "InstanceView",
    "NodeView",
    "Placement",
    "PlacementRequest",
    "Policy",
    "Rejection",
]

MESSAGE_REASONS = 10
"""Rejected nodes named in a no-fit message; the rest are counted."""
DETAIL_REASONS = 100
"""Rejected nodes listed in a no-fit error's `details`; the rest are counted."""


class NodeView(Protocol):
    """What placement reads of the nodes (a `NodeStore`)."""

    def get(self, id: str) -> GameNode: ...
    def list(self) -> builtins.list[GameNode]: ...


class InstanceView(Protocol):
    """What placement reads of the instances (an `InstanceStore`)."""

    def list(self) -> builtins.list[Instance]: ...
    def on_node(self, node_id: str) -> builtins.list[Instance]: ...


class Policy(StrEnum):
    SPREAD = "spread"
    """Most free capacity first: load is balanced over the fleet."""
    PACK = "pack"
    """Least free capacity that still fits first: nodes fill up one after another."""


class _Stage(IntEnum):
    """How far a node got through the checks (a higher stage came closer to fitting)."""

    STATUS = 0
    CONNECTED = 1
    LABELS = 2
    SELECTOR = 3
    CAPACITY = 4


@dataclass(frozen=True, slots=True)
class PlacementRequest:
    """What an instance needs from its node."""

    need: Resources = field(default_factory=Resources)
    platform: Platform | None = None
    """Its `required_labels` must be on the node."""
    selector: Selector = field(default_factory=Selector)
    policy: Policy = Policy.SPREAD
    node_id: str | None = None
    """Only this node is considered (still checked)."""
    what: str = "the instance"
    """How messages name what is being placed, e.g. `quake 1.2.0 on platform docker`."""


@dataclass(frozen=True, slots=True)
class Fit:
    """A node that can take the instance."""

    node: GameNode
    free: Resources
    """Free before placing."""
    headroom: float
    """Free share after placing (see the module docstring)."""
    instances: int
    """Live instances on the node now."""


@dataclass(frozen=True, slots=True)
class Rejection:
    """A node that cannot take the instance, and why."""

    node_id: str
    reason: str
    stage: int = 0
    """Which check failed (higher: came closer to fitting)."""

    def __str__(self) -> str:
        return f"{self.node_id}: {self.reason}"


@dataclass(slots=True)
class _Usage:
    reserved: Resources = field(default_factory=Resources)
    instances: int = 0


class Placement:
    """Chooses a node for a new instance; reads nodes and instances, writes nothing."""

    def __init__(
        self, nodes: NodeView, instances: InstanceView, is_online: Callable[[str], bool] | None = None
    ) -> None:
        self.nodes = nodes
        self.instances = instances
        self.is_online = is_online
        """Whether a node's agent is connected now; None: the node's stored `online` flag."""

    def place(self, request: PlacementRequest) -> Fit:
        """The best node for `request` under its policy, or `Conflict` saying why each node was rejected."""
        fits, rejections = self.evaluate(request)
        if fits:
            return fits[0]
        raise _no_fit(request, rejections)

    def evaluate(self, request: PlacementRequest) -> tuple[list[Fit], list[Rejection]]:
        """Every considered node: those that fit, best first, and those rejected, closest first."""
        nodes = [self.nodes.get(request.node_id)] if request.node_id is not None else self.nodes.list()
        usage = _usage(self.instances.list())
        fits: list[Fit] = []
        rejections: list[Rejection] = []
        for node in nodes:
            verdict = self.check(node, request, usage.get(node.id) or _Usage())
            if isinstance(verdict, Fit):
                fits.append(verdict)
            else:
                rejections.append(verdict)
        fits.sort(key=_spread_key if request.policy == Policy.SPREAD else _pack_key)
        rejections.sort(key=lambda r: (-r.stage, r.node_id))
        return fits, rejections

    def check(self, node: GameNode, request: PlacementRequest, usage: _Usage | None = None) -> Fit | Rejection:
        """Whether `node` can take `request` (given what its live instances hold)."""
        if usage is None:
            usage = _usage(self.instances.on_node(node.id)).get(node.id) or _Usage()
        reason = self._unavailable(node)
        if reason is not None:
            return reason
        if request.platform is not None and (missing := _missing_labels(node, request.platform)):
            return Rejection(node.id, missing, _Stage.LABELS)
        if unmatched := _unmatched(node, request.selector):
            return Rejection(node.id, unmatched, _Stage.SELECTOR)
        return _capacity_fit(node, request.need, usage)

    def _unavailable(self, node: GameNode) -> Rejection | None:
        if node.status == NodeStatus.MAINTENANCE:
            return Rejection(node.id, "in maintenance", _Stage.STATUS)
        if node.status == NodeStatus.OFFLINE:
            return Rejection(node.id, "offline", _Stage.STATUS)
        connected = self.is_online(node.id) if self.is_online is not None else node.online
        if not connected:
            return Rejection(node.id, f"{node.status.value} but its agent is not connected", _Stage.CONNECTED)
        return None


# --- checks -------------------------------------------------------------------


def _usage(instances: Sequence[Instance]) -> dict[str, _Usage]:
    """Per node: what its live instances reserve, and how many there are."""
    out: dict[str, _Usage] = {}
    for i in instances:
        if i.state.live:
            u = out.setdefault(i.node_id, _Usage())
            u.reserved = u.reserved + i.resources
            u.instances += 1
    return out


def _label_problem(labels: Mapping[str, str], key: str) -> str:
    value = labels.get(key)
    return f"label {key} missing" if value is None else f"label {key} is {value or '(empty)'}"


def _missing_labels(node: GameNode, platform: Platform) -> str:
    wrong = sorted(k for k, v in platform.required_labels.items() if node.labels.get(k) != v)
    return ", ".join(
        f"{_label_problem(node.labels, k)} (platform {platform.id} requires {k}={platform.required_labels[k]})"
        for k in wrong
    )


def _unmatched(node: GameNode, selector: Selector) -> str:
    return ", ".join(
        f"{_label_problem(node.labels, r.key)} (selector wants {r})"
        for r in selector.requirements if not r.matches(node.labels)
    )


def _free(capacity: Resources, reserved: Resources) -> Resources:
    return Resources(
        cpu=max(capacity.cpu - reserved.cpu, 0.0),
        memory_mb=max(capacity.memory_mb - reserved.memory_mb, 0),
        gpu=max(capacity.gpu - reserved.gpu, 0),
    )


def _capacity_fit(node: GameNode, need: Resources, usage: _Usage) -> Fit | Rejection:
    capacity = node_capacity(node)
    free = _free(capacity, usage.reserved)
    if not (usage.reserved + need).fits_in(capacity):
        return Rejection(node.id, _shortage(need, free), _Stage.CAPACITY)
    return Fit(node, free, _headroom(capacity, free, need), usage.instances)


def _shortage(need: Resources, free: Resources) -> str:
    short = []
    if need.cpu > free.cpu + 1e-9:
        short.append(f"needs {need.cpu:g} CPU ({free.cpu:g} free)")
    if need.memory_mb > free.memory_mb:
        short.append(f"needs {need.memory_mb} MB memory ({free.memory_mb} MB free)")
    if need.gpu > free.gpu:
        short.append(f"needs {need.gpu} GPU ({free.gpu} free)")
    return ", ".join(short)


def _headroom(capacity: Resources, free: Resources, need: Resources) -> float:
    shares = []
    if capacity.cpu > 0:
        shares.append((free.cpu - need.cpu) / capacity.cpu)
    if capacity.memory_mb > 0:
        shares.append((free.memory_mb - need.memory_mb) / capacity.memory_mb)
    if need.gpu > 0 and capacity.gpu > 0:
        shares.append((free.gpu - need.gpu) / capacity.gpu)
    return round(sum(shares) / len(shares), 9) if shares else 0.0


def _spread_key(fit: Fit) -> tuple[float, int, str]:
    return (-fit.headroom, fit.instances, fit.node.id)


def _pack_key(fit: Fit) -> tuple[float, int, str]:
    return (fit.headroom, -fit.instances, fit.node.id)


# --- the no-fit answer ----------------------------------------------------------


def _no_fit(request: PlacementRequest, rejections: list[Rejection]) -> Conflict:
    if request.node_id is not None and rejections:
        return Conflict(f"node {request.node_id!r} cannot take {request.what}: {rejections[0].reason}",
                        [FieldError(r.node_id, r.reason) for r in rejections])
    if not rejections:
        return Conflict(f"no node can take {request.what}: there are no nodes")
    named = "; ".join(str(r) for r in rejections[:MESSAGE_REASONS])
    rest = len(rejections) - MESSAGE_REASONS
    more = f"; and {rest} more node{'s' if rest != 1 else ''}" if rest > 0 else ""
    details = [FieldError(r.node_id, r.reason) for r in rejections[:DETAIL_REASONS]]
    if len(rejections) > DETAIL_REASONS:
        details.append(FieldError("", f"and {len(rejections) - DETAIL_REASONS} more nodes"))
    count = f"{len(rejections)} node{'s' if len(rejections) != 1 else ''}"
    return Conflict(f"no node can take {request.what} ({count} rejected): {named}{more}", details)
