"""Store benchmark: durable update latency at 100 vs 10,000 nodes, cold load.

    python bench/store_bench.py [--updates 500] [--sizes 100,10000]

Each update is one node changed through `NodeStore.mutate` (temp file, fsync,
rename, fsync dir) and timed until it returns. Cold load opens the data
directory in a fresh `Stores` (process page cache warm): once with the index a
clean close leaves, once without it (after a crash). Targets (DESIGN.md): p99
ratio 10k/100 < 3, p99 < 20 ms, cold load of 10,000 < 2 s.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from console.models import GameNode
from console.store import Stores
from console.store.yamlio import dump_yaml


def make_node(i: int) -> GameNode:
    return GameNode(
        id=f"node-{i:05d}", name=f"eu-west-gpu-{i:05d}", model="Dell PowerEdge R750", type="physical",
        status="online", location="Frankfurt DC2",
        hardware={"cpu": {"model": "AMD EPYC 7543 32-Core", "cores": 32}, "memory_mb": 131072,
                  "gpus": [{"model": "NVIDIA L4", "memory_mb": 24576}] * 2,
                  "disks": [{"mount": "/", "size_gb": 960, "kind": "nvme"}]},
        network={"ip": f"10.{i // 65536}.{i // 256 % 256}.{i % 256}", "bandwidth_mbps": 10000},
        labels={"region": "eu", "rack": f"r{i % 40}", "tier": "gold"},
    )


def populate(data_dir: Path, n: int) -> None:
    """Write n node files directly (setup only; the store writes them the same way)."""
    nodes = data_dir / "nodes"
    nodes.mkdir(parents=True)
    for i in range(n):
        (nodes / f"node-{i:05d}.yaml").write_text(dump_yaml(make_node(i).model_dump(mode="json")))
    os.sync()


def percentile(samples: list[float], p: float) -> float:
    ordered = sorted(samples)
    return ordered[min(int(len(ordered) * p / 100), len(ordered) - 1)]


def bench_updates(data_dir: Path, n: int, updates: int) -> list[float]:
    rng = random.Random(n)
    stores = Stores.open(data_dir)
    try:
        samples = []
        for k in range(updates):
            id = f"node-{rng.randrange(n):05d}"
            t0 = time.perf_counter()
            stores.nodes.mutate(id, lambda node, k=k: node.model_copy(update={"metrics": {"cpu": k % 100}}))
            samples.append(time.perf_counter() - t0)
        return samples
    finally:
        stores.close()


def bench_load(data_dir: Path, with_index: bool) -> tuple[float, int]:
    index = data_dir / "nodes" / ".index.json"
    if not with_index:
        index.unlink(missing_ok=True)
    t0 = time.perf_counter()
    stores = Stores.open(data_dir)
    elapsed = time.perf_counter() - t0
    count = len(stores.nodes)
    stores.data_dir.close()  # leave the index as it was found
    return elapsed, count


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--updates", type=int, default=500)
    parser.add_argument("--sizes", default="100,10000")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]

    rows = []
    loads: dict[int, tuple[float, float]] = {}
    with tempfile.TemporaryDirectory(prefix="gamenode-bench-", dir=os.environ.get("BENCH_DIR")) as tmp:
        for n in sizes:
            data_dir = Path(tmp) / f"n{n}"
            populate(data_dir, n)
            no_index, _ = bench_load(data_dir, with_index=False)
            samples = bench_updates(data_dir, n, args.updates)  # the clean close writes the index
            indexed, count = bench_load(data_dir, with_index=True)
            assert count == n, (count, n)
            loads[n] = (indexed, no_index)
            rows.append((n, percentile(samples, 50) * 1e3, percentile(samples, 99) * 1e3,
                         statistics.mean(samples) * 1e3, max(samples) * 1e3))

    print(f"store benchmark: {args.updates} durable updates per size (fsync'ed), cold loads with a warm page cache")
    print()
    print(f"{'nodes':>7} {'p50 ms':>8} {'p99 ms':>8} {'mean ms':>8} {'max ms':>8} "
          f"{'load s (index)':>15} {'load s (no index)':>18}")
    for n, p50, p99, mean, worst in rows:
        indexed, no_index = loads[n]
        print(f"{n:>7} {p50:>8.2f} {p99:>8.2f} {mean:>8.2f} {worst:>8.2f} {indexed:>15.3f} {no_index:>18.3f}")
    if len(rows) >= 2:
        small, large = rows[0], rows[-1]
        print()
        print(f"update latency ratio {large[0]}/{small[0]} nodes: p50 {large[1] / small[1]:.2f}x, "
              f"p99 {large[2] / small[2]:.2f}x   (target < 3)")
        print(f"p99 at {large[0]} nodes: {large[2]:.2f} ms (target < 20 ms); "
              f"cold load of {large[0]}: {loads[large[0]][0]:.3f} s with index, "
              f"{loads[large[0]][1]:.3f} s without (target < 2 s)")


if __name__ == "__main__":
    main()
