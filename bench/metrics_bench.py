"""/metrics benchmark: one Prometheus scrape of the hub at 1,000 and 10,000 online nodes.

    python bench/metrics_bench.py [--sizes 1000,10000] [--rounds 5]

Each node is online with a full latest sample (2 disks, eth0 + docker0 + 4
container veths, 2 GPUs) in the hub's `LiveState`; the node records come from
a real data directory. A scrape is `HubMetrics.render()` (what the route
answers, uncompressed), then gzip at the route's level. The median of
`rounds` scrapes is printed (wall and CPU time of the render: on a shared
machine the CPU time is the steadier figure), with the body's size and series
count. Target (issue #7): 10,000 nodes well under a second.
"""

from __future__ import annotations

import argparse
import gzip
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from console.hub.live import LiveState
from console.hub.metrics import GZIP_LEVEL, HubMetrics
from console.models import GameNode
from console.service import Services
from console.store import Stores
from console.store.yamlio import dump_yaml
from proto import gamenode_pb2 as pb


def make_node(i: int) -> GameNode:
    return GameNode(
        id=f"node-{i:05d}", name=f"eu-west-gpu-{i:05d}", model="Dell PowerEdge R750", type="physical",
        status="online", online=True, location="Frankfurt DC2",
        hardware={"agent": {"version": "0.1.0", "capabilities": []}, "memory_mb": 131072},
        labels={"region": "eu", "rack": f"r{i % 40}"},
    )


def make_sample(i: int) -> pb.MetricsSample:
    s = pb.MetricsSample(cpu_percent=12.5 + i % 80, load1=1.25, memory_total_bytes=137_438_953_472,
                         memory_used_bytes=40_000_000_000 + i, instances=i % 7)
    s.at.FromNanoseconds(time.time_ns())
    s.disks.add(mount="/", total_bytes=960_000_000_000, used_bytes=120_000_000_000 + i)
    s.disks.add(mount="/data", total_bytes=3_840_000_000_000, used_bytes=2_000_000_000_000 + i)
    for name in ("eth0", "docker0", "veth1a2b3c", "veth4d5e6f", "veth7a8b9c", "vethdeadbe"):
        s.nets.add(interface=name, rx_bytes_per_s=1_250_000.5 + i, tx_bytes_per_s=2_500_000.25)
    for g in range(2):
        s.gpus.add(index=g, name="NVIDIA L4", utilization_percent=37.5 + g, memory_total_bytes=24_152_899_584,
                   memory_used_bytes=8_000_000_000 + g)
    return s


def populate(data_dir: Path, n: int) -> None:
    """Write n node files directly (setup only; the store writes them the same way, fsynced)."""
    nodes = data_dir / "nodes"
    nodes.mkdir(parents=True)
    for i in range(n):
        (nodes / f"node-{i:05d}.yaml").write_text(dump_yaml(make_node(i).model_dump(mode="json")))


def bench(n: int, rounds: int) -> None:
    with tempfile.TemporaryDirectory(prefix="gamenode-metrics-bench-") as tmp:
        populate(Path(tmp) / "data", n)
        stores = Stores.open(Path(tmp) / "data")
        try:
            live = LiveState()
            for i in range(n):
                live.add_samples(f"node-{i:05d}", [make_sample(i)], now=time.time())
                live.heartbeat(f"node-{i:05d}", i % 7, "available")
            metrics = HubMetrics(Services.over(stores), live)
            metrics.render()  # warm up
            render, cpu, compress = [], [], []
            for _ in range(rounds):
                t0, c0 = time.perf_counter(), time.process_time()
                body = metrics.render()
                t1, c1 = time.perf_counter(), time.process_time()
                packed = gzip.compress(body, compresslevel=GZIP_LEVEL)
                render.append(t1 - t0)
                cpu.append(c1 - c0)
                compress.append(time.perf_counter() - t1)
        finally:
            stores.close()
    series = sum(1 for line in body.split(b"\n") if line and not line.startswith(b"#"))
    print(f"{n:>7,} nodes  {series:>9,} series  render {statistics.median(render) * 1000:7.1f} ms "
          f"(CPU {statistics.median(cpu) * 1000:6.1f} ms)  + gzip {statistics.median(compress) * 1000:6.1f} ms  "
          f"body {len(body) / 1e6:6.2f} MB  gzipped {len(packed) / 1e6:5.2f} MB")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1000,10000", help="node counts, comma-separated")
    parser.add_argument("--rounds", type=int, default=5, help="scrapes per size (the median is printed)")
    args = parser.parse_args()
    for n in (int(s) for s in args.sizes.split(",")):
        bench(n, args.rounds)


if __name__ == "__main__":
    main()
