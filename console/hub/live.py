"""What the agents report that is not written to disk: metrics, heartbeats, recent events.

Per node the hub keeps, in memory only:

- a ring of metrics samples (`MetricsRing`), each stored serialized (~250
  bytes; a parsed sample holds ~1.2 KB), as many as `history` seconds at the
  node's metrics interval. As the fleet grows the hub widens the interval, so
  the total stays bounded (about history * heartbeat_rate / 2 samples);
- the latest sample, parsed, which fills the node's `metrics` and `resources`
  maps in API answers (`overlay`) without ever being written to YAML;
- the running instance count and container runtime state from heartbeats;
- small rings of the latest pipeline events, log chunks and instance reports.

Across nodes it counts the messages agents send, by kind (`EventCounts`): a
total since the hub started and a rate over the last `RATE_WINDOW` seconds,
for `/metrics` (`console.hub.metrics`). Counting is an add to a dict entry and
a clock read per message; everything else is done when the metrics are read.

Writers run on the hub's event loop. `overlay` may run on any thread (REST
routes run in a thread pool): it reads one reference per node. The rings are
read only on the loop (the routes and RPCs that query them are coroutines).
"""

from __future__ import annotations

import logging
import math
import time
from array import array
from collections import deque
from collections.abc import Callable, Iterable
from typing import Any

from console.hub.convert import sample_resources, sample_time, sample_to_dict
from console.models import GameNode
from proto import gamenode_pb2 as pb

__all__ = ["EVENT_KINDS", "RATE_WINDOW", "EventCounts", "LiveState", "MetricsRing", "NodeLive"]

log = logging.getLogger(__name__)

PIPELINE_EVENTS_KEPT = 256
LOG_CHUNKS_KEPT = 256
INSTANCE_REPORTS_KEPT = 16
MAX_RING = 100_000
EVENT_KINDS = ("heartbeat", "metrics", "pipeline_event", "log_chunk", "instance_report")
"""The kinds `LiveState` counts by itself; others (`count`) are added as they come."""
RATE_WINDOW = 10
"""Seconds the events-per-second rate is averaged over (whole seconds, the current one left out)."""


class EventCounts:
    """Messages from agents by kind: totals, and per-second counts of the last `RATE_WINDOW` seconds.

    Written on the loop; read from any thread (`totals` and `rates` copy what they read).
    """

    __slots__ = ("_clock", "_slot_second", "_slots", "_totals")

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._totals: dict[str, int] = dict.fromkeys(EVENT_KINDS, 0)
        size = RATE_WINDOW + 1  # the window's whole seconds and the one under way
        self._slot_second = [-1] * size
        """The second (`int(clock())`) each slot counts; a slot is reused for a newer one."""
        self._slots: list[dict[str, int]] = [{} for _ in range(size)]

    def add(self, kind: str, n: int = 1) -> None:
        self._totals[kind] = self._totals.get(kind, 0) + n
        second = int(self._clock())
        i = second % len(self._slots)
        if self._slot_second[i] != second:
            self._slot_second[i] = second
            self._slots[i] = {}
        slot = self._slots[i]
        slot[kind] = slot.get(kind, 0) + n

    def totals(self) -> dict[str, int]:
        """Messages of each kind since the hub started (every kind in `EVENT_KINDS`, 0 or more)."""
        return dict(self._totals)

    def rates(self) -> dict[str, float]:
        """Messages per second of each kind over the last `RATE_WINDOW` whole seconds."""
        now = int(self._clock())
        sums = dict.fromkeys(self._totals, 0)
        for second, slot in zip(list(self._slot_second), list(self._slots), strict=True):
            if now - RATE_WINDOW <= second < now:
                for kind, n in dict(slot).items():
                    sums[kind] = sums.get(kind, 0) + n
        return {kind: n / RATE_WINDOW for kind, n in sums.items()}


class MetricsRing:
    """The last `capacity` samples of one node, oldest first; appending allocates nothing of its own."""

    __slots__ = ("_at", "_data", "_head", "_len")

    def __init__(self, capacity: int) -> None:
        if capacity < 1:
            raise ValueError("a metrics ring holds at least one sample")
        self._at = array("d", bytes(8 * capacity))
        self._data: list[bytes] = [b""] * capacity
        self._head = 0
        """Where the next sample goes."""
        self._len = 0

    @property
    def capacity(self) -> int:
        return len(self._data)

    def __len__(self) -> int:
        return self._len

    def append(self, at: float, data: bytes) -> None:
        head = self._head
        self._at[head] = at
        self._data[head] = data
        self._head = (head + 1) % len(self._data)
        if self._len < len(self._data):
            self._len += 1

    def entries(self, since: float | None = None, until: float | None = None) -> list[tuple[float, bytes]]:
        """(time, serialized sample), oldest first, with `since <= time <= until` (each bound optional)."""
        cap = len(self._data)
        start = (self._head - self._len) % cap
        out = []
        for k in range(self._len):
            i = (start + k) % cap
            at = self._at[i]
            if (since is None or at >= since) and (until is None or at <= until):
                out.append((at, self._data[i]))
        return out

    def samples(self, since: float | None = None, until: float | None = None) -> list[pb.MetricsSample]:
        return [pb.MetricsSample.FromString(data) for _, data in self.entries(since, until)]

    def resized(self, capacity: int) -> MetricsRing:
        """A ring of another size with the newest samples of this one."""
        ring = MetricsRing(capacity)
        for at, data in self.entries()[-capacity:]:
            ring.append(at, data)
        return ring


class NodeLive:
    """Everything volatile the hub knows about one node."""

    __slots__ = ("_view", "instances", "latest", "log_chunks", "pipeline_events", "reports", "ring", "runtime")

    def __init__(self, capacity: int) -> None:
        self.ring = MetricsRing(capacity)
        self.latest: pb.MetricsSample | None = None
        self.instances: int | None = None
        """Running game instances, from the latest heartbeat or sample."""
        self.runtime = ""
        """The container runtime's state from the latest heartbeat ("available" or why not)."""
        self.pipeline_events: deque[pb.PipelineEvent] = deque(maxlen=PIPELINE_EVENTS_KEPT)
        self.log_chunks: deque[pb.LogChunk] = deque(maxlen=LOG_CHUNKS_KEPT)
        self.reports: deque[pb.InstanceReport] = deque(maxlen=INSTANCE_REPORTS_KEPT)
        self._view: tuple[pb.MetricsSample, int | None, dict[str, Any], dict[str, Any]] | None = None

    def view(self) -> tuple[dict[str, Any], dict[str, Any]] | None:
        """(metrics, resources) as JSON of the latest sample; built once per sample, then shared.

        Keyed by the sample it was built from, so a reader on another thread never
        keeps a view of an older sample than the latest.
        """
        latest, instances = self.latest, self.instances
        if latest is None:
            return None
        view = self._view
        if view is None or view[0] is not latest or view[1] != instances:
            view = self._view = (latest, instances, sample_to_dict(latest), sample_resources(latest, instances))
        return view[2], view[3]


class LiveState:
    """The volatile state of every node, and who wants to hear when it changes."""

    def __init__(
        self, history: float = 3600.0, metrics_interval: float = 10.0, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.history_s = history
        self.default_capacity = self.capacity_for(metrics_interval)
        self.events = EventCounts(clock)
        """Agent messages by kind, for `/metrics`; `count` adds those that do not pass through here."""
        self._nodes: dict[str, NodeLive] = {}
        self._listeners: list[Callable[[str], None]] = []

    def capacity_for(self, metrics_interval: float) -> int:
        """Samples in `history` seconds at one sample per `metrics_interval`."""
        return max(1, min(MAX_RING, math.ceil(self.history_s / metrics_interval)))

    def subscribe(self, listener: Callable[[str], None]) -> None:
        """`listener(node_id)` after the node's metrics or instance count changed (on the loop)."""
        self._listeners.append(listener)

    def count(self, kind: str, n: int = 1) -> None:
        """Count `n` agent messages of `kind` (one the methods below do not count: inventory, command_ack)."""
        self.events.add(kind, n)

    def node(self, node_id: str) -> NodeLive:
        entry = self._nodes.get(node_id)
        if entry is None:
            entry = self._nodes[node_id] = NodeLive(self.default_capacity)
        return entry

    def find(self, node_id: str) -> NodeLive | None:
        return self._nodes.get(node_id)

    def forget(self, node_id: str) -> None:
        """The node is gone: drop what is known of it."""
        self._nodes.pop(node_id, None)

    def set_metrics_interval(self, node_id: str, seconds: float) -> None:
        """Size the node's ring for the interval its agent was handed."""
        entry = self.node(node_id)
        capacity = self.capacity_for(seconds)
        if entry.ring.capacity != capacity:
            entry.ring = entry.ring.resized(capacity)

    # --- the hot path: volatile messages --------------------------------------

    def add_samples(self, node_id: str, samples: Iterable[pb.MetricsSample], now: float) -> None:
        self.events.add("metrics")
        entry = self.node(node_id)
        latest = None
        for sample in samples:
            at = sample_time(sample)
            if at == 0.0:  # the agent did not say when: now, as the hub saw it
                sample.at.FromNanoseconds(int(now * 1e9))
                at = now
            entry.ring.append(at, sample.SerializeToString())
            latest = sample
        if latest is not None:
            entry.latest = latest
            entry.instances = latest.instances
            self._changed(node_id)

    def heartbeat(self, node_id: str, instances: int, runtime: str) -> None:
        self.events.add("heartbeat")
        entry = self.node(node_id)
        entry.runtime = runtime
        if instances != entry.instances:
            entry.instances = instances
            self._changed(node_id)

    # --- reliable events --------------------------------------------------------

    def add_pipeline_event(self, node_id: str, event: pb.PipelineEvent) -> None:
        self.events.add("pipeline_event")
        self.node(node_id).pipeline_events.append(event)

    def add_log_chunk(self, node_id: str, chunk: pb.LogChunk) -> None:
        self.events.add("log_chunk")
        self.node(node_id).log_chunks.append(chunk)

    def add_instance_report(self, node_id: str, report: pb.InstanceReport) -> None:
        self.events.add("instance_report")
        self.node(node_id).reports.append(report)

    # --- reading ----------------------------------------------------------------

    def latest(self, node_id: str) -> pb.MetricsSample | None:
        entry = self._nodes.get(node_id)
        return entry.latest if entry else None

    def history(self, node_id: str, since: float | None = None, until: float | None = None) -> list[pb.MetricsSample]:
        """The node's samples taken in [since, until] (Unix seconds), oldest first; call on the loop."""
        entry = self._nodes.get(node_id)
        return entry.ring.samples(since, until) if entry else []

    def overlay(self, node: GameNode) -> GameNode:
        """The node with `metrics` and `resources` from its latest sample (the record is not changed)."""
        entry = self._nodes.get(node.id)
        view = entry.view() if entry is not None else None
        if view is None:
            return node
        return node.model_copy(update={"metrics": view[0], "resources": view[1]})

    def _changed(self, node_id: str) -> None:
        for listener in self._listeners:
            listener(node_id)
