"""The hub's Prometheus metrics: `GET /metrics` in the text exposition format (version 0.0.4).

Everything is read when Prometheus scrapes: the node records, each node's
latest metrics sample (`LiveState`), the agent sessions, the run and rollout
records. Nothing is done per agent message but the counting in
`LiveState.events`.

Per node, labels `node` (its id), `name` and, when set, `location`:

    gamenode_node_online                         1 while its agent is connected, else 0
    gamenode_node_info                           1; + type, model, status, agent_version
    gamenode_node_cpu_percent                    \\
    gamenode_node_load1                           |
    gamenode_node_memory_used_bytes               |  from the latest sample,
    gamenode_node_memory_total_bytes              |  only while the node is online
    gamenode_node_disk_used_bytes{mount}          |  (a node that went away has
    gamenode_node_disk_total_bytes{mount}         |  no stale values)
    gamenode_node_net_rx_bytes_per_second{interface}
    gamenode_node_net_tx_bytes_per_second{interface}
    gamenode_node_gpu_utilization_percent{gpu}    |
    gamenode_node_gpu_memory_used_bytes{gpu}      |
    gamenode_node_gpu_memory_total_bytes{gpu}     |
    gamenode_node_instances                      /  running game instances

Network interfaces that come and go with containers and VMs (`veth*`,
`cali*`, `tap*`) are left out: one series per container would grow without
bound.

The hub itself: `gamenode_hub_info{version}`, `gamenode_hub_nodes{status}`,
`gamenode_hub_connected_agents`, `gamenode_hub_events_total{kind}` (agent
messages; Prometheus derives rates from it) and
`gamenode_hub_events_per_second{kind}` (the last 10 s, for a glance without
PromQL), `gamenode_hub_runs{state}`, `gamenode_hub_rollouts{state}`,
`gamenode_hub_rollout_hosts{result}` (every rollout on record), the log
writer's `gamenode_hub_log_lines_total`, `gamenode_hub_log_lines_dropped_total`
and `gamenode_hub_log_lines_queued`, and the hub process's own `process_*`
metrics (CPU, memory, open files).

The route runs in the app's thread pool, not on the event loop; what it reads
there is safe to read from any thread (one dict lookup or a copied list each).

Speed: prometheus_client's generic exposition costs about 20 µs a sample (two
seconds for 10,000 nodes), so the per-node families are written here
directly, with each node's label set escaped once per scrape; the hub's few
dozen samples go through a prometheus_client `Collector`. `bench/metrics_bench.py`
measures a scrape at 1,000 and 10,000 nodes.
"""

from __future__ import annotations

import gzip
from collections import Counter
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING

from fastapi import APIRouter, Request, Response
from prometheus_client import CollectorRegistry, ProcessCollector
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4, generate_latest
from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, Metric

from agent import __version__
from console.hub.live import RATE_WINDOW, LiveState
from console.models import GameNode, NodeStatus, RolloutState, RunState
from console.service import Services
from proto import gamenode_pb2 as pb

if TYPE_CHECKING:
    from console.hub.sessions import SessionRegistry
    from console.service.logs import LogService

__all__ = ["NODE_FAMILIES", "HubCollector", "HubMetrics", "router"]

ONLINE = "gamenode_node_online"
INFO = "gamenode_node_info"
CPU = "gamenode_node_cpu_percent"
LOAD1 = "gamenode_node_load1"
MEMORY_USED = "gamenode_node_memory_used_bytes"
MEMORY_TOTAL = "gamenode_node_memory_total_bytes"
DISK_USED = "gamenode_node_disk_used_bytes"
DISK_TOTAL = "gamenode_node_disk_total_bytes"
NET_RX = "gamenode_node_net_rx_bytes_per_second"
NET_TX = "gamenode_node_net_tx_bytes_per_second"
GPU_UTILIZATION = "gamenode_node_gpu_utilization_percent"
GPU_MEMORY_USED = "gamenode_node_gpu_memory_used_bytes"
GPU_MEMORY_TOTAL = "gamenode_node_gpu_memory_total_bytes"
INSTANCES = "gamenode_node_instances"

NODE_FAMILIES: dict[str, str] = {
    ONLINE: "1 while the node's agent is connected to the hub, else 0.",
    INFO: "Always 1; the labels describe the node.",
    CPU: "CPU use of the node, 0-100, from its latest sample.",
    LOAD1: "1-minute load average of the node.",
    MEMORY_USED: "Memory in use on the node.",
    MEMORY_TOTAL: "Memory of the node.",
    DISK_USED: "Bytes used on one mounted disk of the node.",
    DISK_TOTAL: "Size of one mounted disk of the node.",
    NET_RX: "Bytes received per second on one network interface.",
    NET_TX: "Bytes sent per second on one network interface.",
    GPU_UTILIZATION: "Utilization of one GPU of the node, 0-100.",
    GPU_MEMORY_USED: "Memory in use on one GPU of the node.",
    GPU_MEMORY_TOTAL: "Memory of one GPU of the node.",
    INSTANCES: "Game instances running on the node.",
}
"""Every per-node family (all gauges) and its help text, in the order they are written."""

CHURNING_INTERFACES = ("veth", "cali", "tap")
"""Name prefixes of network interfaces made per container or VM: not exported."""
GZIP_LEVEL = 1
"""Fast: a scrape of 10,000 nodes is ~10 MB of text that compresses ~15x even at level 1."""


def _escape(value: str) -> str:
    """A label value as the text format wants it (backslash, quote and newline escaped)."""
    if "\\" in value or '"' in value or "\n" in value:
        return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return value


def _num(value: float) -> str:
    """A sample value; NaN and infinities spelt as Prometheus spells them."""
    if value - value == 0:  # finite (int or float)
        return repr(value)
    return "NaN" if value != value else ("+Inf" if value > 0 else "-Inf")


def _node_labels(node: GameNode) -> str:
    """`node="..",name=".."[,location=".."]`: the labels every series of the node carries."""
    labels = f'node="{_escape(node.id)}",name="{_escape(node.name)}"'
    return f'{labels},location="{_escape(node.location)}"' if node.location else labels


def _info_labels(node: GameNode, base: str) -> str:
    agent = node.hardware.get("agent")
    version = agent.get("version") if isinstance(agent, dict) else None
    return (f'{base},type="{node.type.value}",model="{_escape(node.model)}",status="{node.status.value}",'
            f'agent_version="{_escape(str(version or ""))}"')


class _NodeWriter:
    """The per-node families of one scrape, as lines by family.

    Lines are appended to each family's list in place (no helper call per line): a scrape of 10,000
    nodes writes ~200,000 of them.
    """

    def __init__(self) -> None:
        self.lines: dict[str, list[str]] = {name: [] for name in NODE_FAMILIES}

    def node(self, node: GameNode, online: bool, sample: pb.MetricsSample | None, instances: int | None) -> None:
        base = _node_labels(node)
        lines = self.lines
        lines[ONLINE].append(f"{ONLINE}{{{base}}} {1 if online else 0}\n")
        lines[INFO].append(f"{INFO}{{{_info_labels(node, base)}}} 1\n")
        if not online:
            return
        if sample is not None:
            self._sample(base, sample)
        if instances is not None:
            lines[INSTANCES].append(f"{INSTANCES}{{{base}}} {instances}\n")

    def _sample(self, base: str, s: pb.MetricsSample) -> None:
        lines = self.lines
        lines[CPU].append(f"{CPU}{{{base}}} {_num(s.cpu_percent)}\n")
        lines[LOAD1].append(f"{LOAD1}{{{base}}} {_num(s.load1)}\n")
        lines[MEMORY_USED].append(f"{MEMORY_USED}{{{base}}} {s.memory_used_bytes}\n")
        lines[MEMORY_TOTAL].append(f"{MEMORY_TOTAL}{{{base}}} {s.memory_total_bytes}\n")
        for disk in s.disks:
            labels = f'{base},mount="{_escape(disk.mount)}"'
            lines[DISK_USED].append(f"{DISK_USED}{{{labels}}} {disk.used_bytes}\n")
            lines[DISK_TOTAL].append(f"{DISK_TOTAL}{{{labels}}} {disk.total_bytes}\n")
        for net in s.nets:
            if not net.interface.startswith(CHURNING_INTERFACES):
                labels = f'{base},interface="{_escape(net.interface)}"'
                lines[NET_RX].append(f"{NET_RX}{{{labels}}} {_num(net.rx_bytes_per_s)}\n")
                lines[NET_TX].append(f"{NET_TX}{{{labels}}} {_num(net.tx_bytes_per_s)}\n")
        for gpu in s.gpus:
            labels = f'{base},gpu="{gpu.index}"'
            lines[GPU_UTILIZATION].append(f"{GPU_UTILIZATION}{{{labels}}} {_num(gpu.utilization_percent)}\n")
            lines[GPU_MEMORY_USED].append(f"{GPU_MEMORY_USED}{{{labels}}} {gpu.memory_used_bytes}\n")
            lines[GPU_MEMORY_TOTAL].append(f"{GPU_MEMORY_TOTAL}{{{labels}}} {gpu.memory_total_bytes}\n")

    def text(self) -> str:
        """Every family with its HELP and TYPE lines, in one join (the lines end with their newline)."""
        parts: list[str] = []
        for name, help_text in NODE_FAMILIES.items():
            parts.append(f"# HELP {name} {help_text}\n# TYPE {name} gauge\n")
            parts.extend(self.lines[name])
        return "".join(parts)


class HubCollector:
    """The hub's own metrics (a prometheus_client `Collector`): sessions, agent messages, runs, rollouts, logs."""

    def __init__(self, services: Services, live: LiveState, registry: SessionRegistry | None = None,
                 logs: LogService | None = None, version: str = __version__) -> None:
        self.services = services
        self.live = live
        self.registry = registry
        self.logs = logs
        self.version = version

    def collect(self) -> Iterator[Metric]:
        info = GaugeMetricFamily("gamenode_hub_info", "Always 1; the label is the hub's version.", labels=["version"])
        info.add_metric([self.version], 1)
        yield info
        nodes = list(self.services.nodes.nodes)
        yield _by_label("gamenode_hub_nodes", "Nodes by status.", "status",
                        Counter(n.status.value for n in nodes), [s.value for s in NodeStatus])
        connected = (len(self.registry.sessions) if self.registry is not None
                     else sum(1 for n in nodes if n.online))
        yield GaugeMetricFamily("gamenode_hub_connected_agents", "Agents connected to the hub now.", value=connected)
        yield from self._events()
        runs = Counter(r.state.value for r in self.services.runs.runs)
        yield _by_label("gamenode_hub_runs", "Pipeline runs by state.", "state", runs, [s.value for s in RunState])
        rollouts = list(self.services.rollouts.rollouts)
        yield _by_label("gamenode_hub_rollouts", "Agent rollouts by state.", "state",
                        Counter(r.state.value for r in rollouts), [s.value for s in RolloutState])
        results = Counter(h.result or "pending" for r in rollouts for h in r.hosts)
        yield _by_label("gamenode_hub_rollout_hosts", "Hosts of agent rollouts by result (pending until it ends).",
                        "result", results, [])
        if self.logs is not None:
            yield from self._log_stats(self.logs)

    def _events(self) -> Iterator[Metric]:
        events = self.live.events
        total = CounterMetricFamily("gamenode_hub_events", "Messages received from agents, by kind.",
                                    labels=["kind"])
        for kind, n in sorted(events.totals().items()):
            total.add_metric([kind], n)
        yield total
        rate = GaugeMetricFamily("gamenode_hub_events_per_second",
                                 f"Messages received from agents per second over the last {RATE_WINDOW} s, by kind.",
                                 labels=["kind"])
        for kind, per_second in sorted(events.rates().items()):
            rate.add_metric([kind], per_second)
        yield rate

    @staticmethod
    def _log_stats(logs: LogService) -> Iterator[Metric]:
        stats = logs.stats()
        yield CounterMetricFamily("gamenode_hub_log_lines", "Log lines from agents accepted for writing.",
                                  value=stats.appended)
        yield CounterMetricFamily("gamenode_hub_log_lines_dropped",
                                  "Log lines dropped because the writer was behind (never written).",
                                  value=stats.dropped)
        yield GaugeMetricFamily("gamenode_hub_log_lines_queued", "Log lines waiting for the writer.",
                                value=stats.queued)


def _by_label(name: str, help_text: str, label: str, counts: Counter[str], always: Iterable[str]) -> Metric:
    """A gauge family with one sample per label value: every value of `always` (0 when none), then the rest."""
    family = GaugeMetricFamily(name, help_text, labels=[label])
    for value in [*always, *sorted(set(counts) - set(always))]:
        family.add_metric([value], counts.get(value, 0))
    return family


class HubMetrics:
    """What `/metrics` answers: the per-node families, then the hub's collector and the process's."""

    def __init__(self, services: Services, live: LiveState, registry: SessionRegistry | None = None,
                 logs: LogService | None = None, version: str = __version__) -> None:
        self.services = services
        self.live = live
        self.registry = registry
        self.collectors = CollectorRegistry(auto_describe=False)
        self.collectors.register(HubCollector(services, live, registry, logs, version))
        ProcessCollector(registry=self.collectors)

    def render(self) -> bytes:
        """The whole exposition, UTF-8."""
        return self.render_nodes().encode() + generate_latest(self.collectors)

    def render_nodes(self) -> str:
        writer = _NodeWriter()
        registry, live = self.registry, self.live
        for node in self.services.nodes.nodes:
            online = registry.connected(node.id) if registry is not None else node.online
            entry = live.find(node.id)
            if entry is None:
                writer.node(node, online, None, None)
            else:
                writer.node(node, online, entry.latest, entry.instances)
        return writer.text()


router = APIRouter(tags=["hub"])
"""Included by `create_app` like the API's routers: the viewer role reads it."""


def _hub_metrics(request: Request) -> HubMetrics:
    """The app's `HubMetrics`, made on the first scrape from what the app serves."""
    state = request.app.state
    metrics: HubMetrics | None = getattr(state, "metrics", None)
    if metrics is None:
        metrics = state.metrics = HubMetrics(state.services, state.live, state.registry, state.logs)
    return metrics


@router.get(
    "/metrics",
    summary="Prometheus metrics",
    description="Nodes (online, CPU, memory, disks, network, GPUs, instances) and the hub itself "
    "(agents, message rates, runs, rollouts) in the Prometheus text format; gzip when asked for.",
    response_class=Response,
    responses={200: {"content": {CONTENT_TYPE_PLAIN_0_0_4: {}}, "description": "The exposition."}},
)
def metrics(request: Request) -> Response:
    body = _hub_metrics(request).render()
    headers = {"Vary": "Accept-Encoding"}
    if "gzip" in request.headers.get("accept-encoding", ""):
        body = gzip.compress(body, compresslevel=GZIP_LEVEL)
        headers["Content-Encoding"] = "gzip"
    return Response(body, media_type=CONTENT_TYPE_PLAIN_0_0_4, headers=headers)
