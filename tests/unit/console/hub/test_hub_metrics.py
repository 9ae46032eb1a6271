"""`GET /metrics`: the per-node and hub families, parsed back with prometheus_client's own parser."""

from __future__ import annotations

import gzip
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import pytest
from fastapi import FastAPI
from prometheus_client.parser import text_string_to_metric_families

from agent import __version__
from console.hub.app import create_app
from console.hub.live import RATE_WINDOW, EventCounts, LiveState
from console.hub.metrics import NODE_FAMILIES, HubMetrics
from console.models import PipelineRun, RolloutHost, RolloutRecord, RolloutState, RunState
from console.service import Services
from console.store import Stores
from proto import gamenode_pb2 as pb

if TYPE_CHECKING:
    from conftest import Hub

Samples = dict[str, dict[tuple[tuple[str, str], ...], float]]
"""sample name -> {sorted label pairs: value}"""


def parse(text: str) -> tuple[dict[str, str], Samples]:
    """(family -> type, samples) of an exposition, through prometheus_client's parser."""
    types: dict[str, str] = {}
    samples: Samples = {}
    for family in text_string_to_metric_families(text):
        types[family.name] = family.type
        for s in family.samples:
            key = tuple(sorted(s.labels.items()))
            assert key not in samples.setdefault(s.name, {}), f"duplicate series {s.name}{s.labels}"
            samples[s.name][key] = s.value
    return types, samples


def value(samples: Samples, series: str, /, **labels: str) -> float:
    return samples[series][tuple(sorted(labels.items()))]


def full_sample(cpu: float = 42.5) -> pb.MetricsSample:
    s = pb.MetricsSample(cpu_percent=cpu, load1=1.5, memory_total_bytes=16_000, memory_used_bytes=4_000,
                         instances=2)
    s.at.FromNanoseconds(1_700_000_000 * 10**9)
    s.disks.add(mount="/", total_bytes=1000, used_bytes=250)
    s.disks.add(mount='/mnt/odd "quoted"\\dir', total_bytes=10, used_bytes=5)
    s.nets.add(interface="eth0", rx_bytes_per_s=100.5, tx_bytes_per_s=200.25)
    s.nets.add(interface="veth0a1b2c", rx_bytes_per_s=1.0, tx_bytes_per_s=1.0)
    s.gpus.add(index=0, name="L4", utilization_percent=30.0, memory_total_bytes=24_000, memory_used_bytes=6_000)
    s.gpus.add(index=1, name="L4", utilization_percent=float("nan"), memory_total_bytes=24_000)
    return s


@pytest.fixture
def stores(tmp_path: Path) -> Iterator[Stores]:
    stores = Stores.open(tmp_path / "data")
    yield stores
    stores.close()


@pytest.fixture
def services(stores: Stores) -> Services:
    return Services.over(stores)


class FakeClock:
    """Monotonic seconds that move only when told."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def live(clock: FakeClock) -> LiveState:
    return LiveState(clock=clock)


@pytest.fixture
def app(services: Services, live: LiveState) -> FastAPI:
    return create_app(services, live=live)


@pytest.fixture
async def client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as client:
        yield client


def add_node(services: Services, node_id: str, online: bool = True, **fields: Any) -> None:
    services.nodes.create_node({"id": node_id, "name": fields.pop("name", node_id.upper()), "type": "physical",
                                **fields})
    if online:
        services.nodes.set_online(node_id, True)


async def scrape(client: httpx.AsyncClient) -> tuple[dict[str, str], Samples]:
    r = await client.get("/metrics", headers={"Accept-Encoding": "identity"})
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "text/plain; version=0.0.4; charset=utf-8"
    return parse(r.text)


# --- per node -------------------------------------------------------------------------------


async def test_a_node_with_a_sample_has_every_family_with_its_labels(
    services: Services, live: LiveState, client: httpx.AsyncClient
) -> None:
    add_node(services, "gpu-1", name='GPU box "one"', location="Frankfurt DC2", model="R750")
    live.add_samples("gpu-1", [full_sample()], now=0)
    live.heartbeat("gpu-1", instances=3, runtime="available")

    types, samples = await scrape(client)
    assert {name: types[name] for name in NODE_FAMILIES} == dict.fromkeys(NODE_FAMILIES, "gauge")
    node = {"node": "gpu-1", "name": 'GPU box "one"', "location": "Frankfurt DC2"}
    assert value(samples, "gamenode_node_online", **node) == 1
    assert value(samples, "gamenode_node_info", **node, type="physical", model="R750", status="offline",
                 agent_version="") == 1
    assert value(samples, "gamenode_node_cpu_percent", **node) == 42.5
    assert value(samples, "gamenode_node_load1", **node) == 1.5
    assert value(samples, "gamenode_node_memory_used_bytes", **node) == 4_000
    assert value(samples, "gamenode_node_memory_total_bytes", **node) == 16_000
    assert value(samples, "gamenode_node_disk_used_bytes", **node, mount="/") == 250
    assert value(samples, "gamenode_node_disk_total_bytes", **node, mount='/mnt/odd "quoted"\\dir') == 10
    assert value(samples, "gamenode_node_net_rx_bytes_per_second", **node, interface="eth0") == 100.5
    assert value(samples, "gamenode_node_net_tx_bytes_per_second", **node, interface="eth0") == 200.25
    assert all(dict(k)["interface"] == "eth0" for k in samples["gamenode_node_net_rx_bytes_per_second"])
    assert value(samples, "gamenode_node_gpu_utilization_percent", **node, gpu="0") == 30.0
    nan = value(samples, "gamenode_node_gpu_utilization_percent", **node, gpu="1")
    assert nan != nan
    assert value(samples, "gamenode_node_gpu_memory_used_bytes", **node, gpu="0") == 6_000
    assert value(samples, "gamenode_node_gpu_memory_total_bytes", **node, gpu="1") == 24_000
    assert value(samples, "gamenode_node_instances", **node) == 3  # the heartbeat's, newer than the sample's


async def test_the_latest_sample_counts_and_offline_nodes_have_no_stale_values(
    services: Services, live: LiveState, client: httpx.AsyncClient
) -> None:
    add_node(services, "a")
    add_node(services, "b", online=False)
    add_node(services, "c")  # online, no sample yet
    live.add_samples("a", [full_sample(cpu=10.0), full_sample(cpu=20.0)], now=0)
    live.add_samples("b", [full_sample(cpu=99.0)], now=0)  # it sent one before it went away

    _, samples = await scrape(client)
    assert samples["gamenode_node_online"] == {
        (("name", "A"), ("node", "a")): 1, (("name", "B"), ("node", "b")): 0, (("name", "C"), ("node", "c")): 1,
    }
    assert samples["gamenode_node_cpu_percent"] == {(("name", "A"), ("node", "a")): 20.0}
    assert set(samples["gamenode_node_info"]) == {
        (("agent_version", ""), ("model", ""), ("name", n.upper()), ("node", n), ("status", "offline"),
         ("type", "physical")) for n in "abc"
    }


async def test_a_deleted_node_leaves_the_exposition(
    services: Services, live: LiveState, client: httpx.AsyncClient
) -> None:
    add_node(services, "gone", online=False)
    live.add_samples("gone", [full_sample()], now=0)
    assert (("name", "GONE"), ("node", "gone")) in (await scrape(client))[1]["gamenode_node_online"]
    services.nodes.delete_node("gone")
    live.forget("gone")
    _, samples = await scrape(client)
    assert "gamenode_node_online" not in samples  # no node: the family is empty


# --- the hub --------------------------------------------------------------------------------


async def test_hub_families_count_agents_events_runs_and_rollouts(
    services: Services, stores: Stores, live: LiveState, clock: FakeClock, client: httpx.AsyncClient
) -> None:
    add_node(services, "a", status="maintenance")
    add_node(services, "b", online=False)
    for state in (RunState.RUNNING, RunState.RUNNING, RunState.FAILED):
        stores.runs.add(PipelineRun(id=f"run-{len(stores.runs)}", node_id="a", pipeline="p", pipeline_yaml="",
                                    state=state))
    stores.rollouts.add(RolloutRecord(id="ro-1", action="install", state=RolloutState.SUCCEEDED, hosts=[
        RolloutHost(node_id="a", host="a:22", result="installed"),
        RolloutHost(node_id="b", host="b:22", result="failed")]))
    stores.rollouts.add(RolloutRecord(id="ro-2", action="install", state=RolloutState.RUNNING, hosts=[
        RolloutHost(node_id="a", host="a:22")]))
    for _ in range(30):
        live.heartbeat("a", 0, "available")
    live.add_samples("a", [full_sample()], now=0)
    live.add_log_chunk("a", pb.LogChunk(source="agent"))
    live.count("inventory")
    clock.advance(1)

    types, samples = await scrape(client)
    assert value(samples, "gamenode_hub_info", version=__version__) == 1
    assert value(samples, "gamenode_hub_connected_agents") == 1
    assert value(samples, "gamenode_hub_nodes", status="maintenance") == 1
    assert value(samples, "gamenode_hub_nodes", status="offline") == 1
    assert value(samples, "gamenode_hub_nodes", status="online") == 0
    assert types["gamenode_hub_events"] == "counter"
    assert samples["gamenode_hub_events_total"] == {
        (("kind", "heartbeat"),): 30, (("kind", "metrics"),): 1, (("kind", "log_chunk"),): 1,
        (("kind", "pipeline_event"),): 0, (("kind", "instance_report"),): 0, (("kind", "inventory"),): 1,
    }
    assert value(samples, "gamenode_hub_events_per_second", kind="heartbeat") == 30 / RATE_WINDOW
    assert value(samples, "gamenode_hub_runs", state="running") == 2
    assert value(samples, "gamenode_hub_runs", state="failed") == 1
    assert value(samples, "gamenode_hub_runs", state="pending") == 0
    assert value(samples, "gamenode_hub_rollouts", state="succeeded") == 1
    assert value(samples, "gamenode_hub_rollouts", state="running") == 1
    assert samples["gamenode_hub_rollout_hosts"] == {
        (("result", "installed"),): 1, (("result", "failed"),): 1, (("result", "pending"),): 1,
    }
    assert "process_resident_memory_bytes" in samples


def test_events_per_second_covers_the_last_whole_seconds(clock: FakeClock) -> None:
    events = EventCounts(clock)
    events.add("heartbeat", 5)  # second 1000: still under way, not in the rate yet
    assert events.rates()["heartbeat"] == 0
    clock.advance(1)
    assert events.rates()["heartbeat"] == 5 / RATE_WINDOW
    for _ in range(RATE_WINDOW - 1):
        events.add("heartbeat", 10)
        clock.advance(1)
    assert events.rates()["heartbeat"] == (5 + 10 * (RATE_WINDOW - 1)) / RATE_WINDOW
    clock.advance(1)  # second 1000 leaves the window
    assert events.rates()["heartbeat"] == 10 * (RATE_WINDOW - 1) / RATE_WINDOW
    clock.advance(3 * RATE_WINDOW)  # quiet: slots from long ago are not counted again
    assert events.rates()["heartbeat"] == 0
    assert events.totals()["heartbeat"] == 5 + 10 * (RATE_WINDOW - 1)


async def test_the_answer_is_gzipped_when_asked_for(services: Services, client: httpx.AsyncClient) -> None:
    add_node(services, "a")
    r = await client.get("/metrics", headers={"Accept-Encoding": "gzip"})
    assert r.status_code == 200 and r.headers["content-encoding"] == "gzip"
    plain = gzip.decompress(r.content) if r.content[:2] == b"\x1f\x8b" else r.content  # httpx may have inflated it
    assert b'gamenode_node_online{node="a",name="A"} 1' in plain


def test_render_is_the_same_without_the_app(services: Services, live: LiveState) -> None:
    add_node(services, "a")
    live.add_samples("a", [full_sample()], now=0)
    text = HubMetrics(services, live).render().decode()
    _, samples = parse(text)
    assert value(samples, "gamenode_node_cpu_percent", node="a", name="A") == 42.5


# --- a real hub: sessions, gRPC agent messages, the API token ----------------------------------


async def test_a_hub_counts_a_real_agent_stream_and_wants_a_token(hub: Hub) -> None:
    agent = hub.make_agent("n1", location="lab")
    await agent.connect()
    await agent.heartbeat(instances=4)
    await agent.send(metrics=pb.MetricsBatch(samples=[full_sample(cpu=7.5)]))
    await agent.event(log_chunk=pb.LogChunk(source="agent", lines=[pb.LogLine(text="hello")]))
    await agent.sync()
    await hub.settle()

    async with await hub.client() as client:
        _, samples = await scrape(client)
        anonymous = await client.get("/metrics", headers={"Authorization": ""})
    node = {"node": "n1", "name": "n1", "location": "lab"}
    assert value(samples, "gamenode_node_online", **node) == 1
    assert value(samples, "gamenode_node_cpu_percent", **node) == 7.5
    assert value(samples, "gamenode_node_instances", **node) == 2  # the sample came after the heartbeat
    assert value(samples, "gamenode_hub_connected_agents") == 1
    assert value(samples, "gamenode_hub_events_total", kind="heartbeat") >= 1
    assert value(samples, "gamenode_hub_events_total", kind="metrics") == 1
    assert value(samples, "gamenode_hub_events_total", kind="log_chunk") >= 1
    assert value(samples, "gamenode_hub_log_lines_total") >= 1
    assert anonymous.status_code == 401
