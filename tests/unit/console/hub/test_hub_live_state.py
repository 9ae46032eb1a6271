"""The in-memory live state: the metrics ring, ring sizes, and the overlay on nodes."""

from __future__ import annotations

import pytest

from console.hub.live import LiveState, MetricsRing
from console.models import GameNode
from proto import gamenode_pb2 as pb


def sample(at: float, cpu: float = 1.0, **fields: object) -> pb.MetricsSample:
    s = pb.MetricsSample(cpu_percent=cpu, **fields)  # type: ignore[arg-type]
    if at:
        s.at.FromNanoseconds(int(at * 1e9))
    return s


# --- the ring ------------------------------------------------------------------------


def test_the_ring_keeps_the_newest_samples_oldest_first() -> None:
    ring = MetricsRing(3)
    assert len(ring) == 0 and ring.entries() == []
    for t in range(1, 6):
        ring.append(float(t), sample(t, cpu=t).SerializeToString())
    assert len(ring) == 3 and ring.capacity == 3
    assert [at for at, _ in ring.entries()] == [3.0, 4.0, 5.0]
    assert [s.cpu_percent for s in ring.samples()] == [3.0, 4.0, 5.0]


def test_since_and_until_are_inclusive_and_optional() -> None:
    ring = MetricsRing(10)
    for t in (10.0, 20.0, 30.0, 40.0):
        ring.append(t, b"")
    assert [at for at, _ in ring.entries(since=20)] == [20.0, 30.0, 40.0]
    assert [at for at, _ in ring.entries(until=30)] == [10.0, 20.0, 30.0]
    assert [at for at, _ in ring.entries(since=15, until=35)] == [20.0, 30.0]
    assert ring.entries(since=41) == []


def test_resizing_keeps_the_newest() -> None:
    ring = MetricsRing(5)
    for t in range(1, 6):
        ring.append(float(t), b"x")
    assert [at for at, _ in ring.resized(2).entries()] == [4.0, 5.0]
    bigger = ring.resized(8)
    assert [at for at, _ in bigger.entries()] == [1.0, 2.0, 3.0, 4.0, 5.0] and bigger.capacity == 8


def test_a_ring_holds_at_least_one() -> None:
    with pytest.raises(ValueError):
        MetricsRing(0)


def test_ring_size_is_the_history_at_the_metrics_interval() -> None:
    live = LiveState(history=3600, metrics_interval=10)
    assert live.default_capacity == 360
    assert live.capacity_for(20) == 180
    assert live.capacity_for(7) == 515
    live.add_samples("n1", [sample(1.0)], now=5.0)
    live.set_metrics_interval("n1", 3600)
    entry = live.find("n1")
    assert entry is not None and entry.ring.capacity == 1 and len(entry.ring) == 1


def test_samples_without_a_time_get_the_hubs() -> None:
    live = LiveState()
    live.add_samples("n1", [sample(0.0)], now=1_700_000_000.5)
    assert live.history("n1")[0].at.ToNanoseconds() == 1_700_000_000_500_000_000
    assert live.history("n1", since=1_700_000_000.5) != []
    assert live.history("unknown") == []


# --- the overlay ---------------------------------------------------------------------


def node(**fields: object) -> GameNode:
    return GameNode.model_validate({"id": "n1", "name": "n1", "type": "physical", **fields})


def full_sample() -> pb.MetricsSample:
    s = sample(1_700_000_000, cpu=42.0, load1=1.5, load5=1.0, load15=0.5, memory_total_bytes=1000,
               memory_used_bytes=250, memory_percent=25.0, instances=3)
    s.disks.add(mount="/", total_bytes=100, used_bytes=50, percent=50.0)
    s.disks.add(mount="/data", total_bytes=100, used_bytes=90, percent=90.0)
    s.nets.add(interface="eth0", rx_bytes_per_s=10.0, tx_bytes_per_s=20.0)
    s.gpus.add(index=0, name="L4", utilization_percent=30.0)
    s.gpus.add(index=1, name="L4", utilization_percent=50.0)
    return s


def test_overlay_fills_metrics_and_resources_from_the_latest_sample() -> None:
    live = LiveState()
    plain = node(metrics={"stale": True})
    assert live.overlay(plain) is plain  # nothing known: the node as it is

    live.add_samples("n1", [sample(1_699_999_990, cpu=1.0), full_sample()], now=0)
    shown = live.overlay(plain)
    assert plain.metrics == {"stale": True}  # the record is not touched
    assert shown.metrics == {
        "at": "2023-11-14T22:13:20Z",
        "cpu_percent": 42.0,
        "load": [1.5, 1.0, 0.5],
        "memory_total_bytes": 1000,
        "memory_used_bytes": 250,
        "memory_percent": 25.0,
        "disks": [
            {"mount": "/", "total_bytes": 100, "used_bytes": 50, "percent": 50.0,
             "read_bytes_per_s": 0.0, "write_bytes_per_s": 0.0},
            {"mount": "/data", "total_bytes": 100, "used_bytes": 90, "percent": 90.0,
             "read_bytes_per_s": 0.0, "write_bytes_per_s": 0.0},
        ],
        "nets": [{"interface": "eth0", "rx_bytes_per_s": 10.0, "tx_bytes_per_s": 20.0}],
        "gpus": [
            {"index": 0, "name": "L4", "utilization_percent": 30.0, "memory_total_bytes": 0,
             "memory_used_bytes": 0, "temperature_c": 0.0, "power_w": 0.0},
            {"index": 1, "name": "L4", "utilization_percent": 50.0, "memory_total_bytes": 0,
             "memory_used_bytes": 0, "temperature_c": 0.0, "power_w": 0.0},
        ],
        "instances": 3,
    }
    assert shown.resources == {
        "cpu_percent": 42.0, "memory_used_bytes": 250, "memory_total_bytes": 1000, "memory_percent": 25.0,
        "disk_percent": 90.0, "gpu_count": 2, "gpu_utilization_percent": 40.0, "instances": 3,
    }


def test_the_view_is_built_once_per_sample_and_follows_heartbeats() -> None:
    live = LiveState()
    changed: list[str] = []
    live.subscribe(changed.append)
    live.add_samples("n1", [full_sample()], now=0)
    first = live.overlay(node())
    assert live.overlay(node()).metrics is first.metrics  # shared until something changes
    live.heartbeat("n1", instances=3, runtime="available")  # same count: nothing changes
    assert changed == ["n1"]
    live.heartbeat("n1", instances=5, runtime="available")
    assert changed == ["n1", "n1"]
    assert live.overlay(node()).resources["instances"] == 5
    live.forget("n1")
    assert live.overlay(node()).metrics == {}


def test_reliable_event_rings_are_bounded() -> None:
    live = LiveState()
    for i in range(300):
        live.add_pipeline_event("n1", pb.PipelineEvent(run_id=str(i)))
        live.add_log_chunk("n1", pb.LogChunk(source=str(i)))
        live.add_instance_report("n1", pb.InstanceReport())
    entry = live.find("n1")
    assert entry is not None
    assert len(entry.pipeline_events) == 256 and entry.pipeline_events[-1].run_id == "299"
    assert len(entry.log_chunks) == 256 and len(entry.reports) == 16
