"""Log benchmark: append throughput through LogService into files, query time over many lines.

    python bench/log_bench.py [--lines 1000000] [--chunk 100] [--sources 20]

Append: `LogChunk`s of `--chunk` lines (a node's run and instance sources in
turn) go through `LogService.append` as an agent stream would hand them over,
then `flush()`; lines/s counts appended lines that reached the files (the
queue is sized so nothing is dropped). Append call: the time `append` itself
takes per chunk (the event loop's cost). Query: `LogService.query` over all
the lines with a substring `q` that matches few lines, a regex, a level
filter, a narrow time range, and no filter (the last 1000 lines).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from google.protobuf import timestamp_pb2

from console.service.logs import LogQuery, LogService
from console.store.logs import LogStore
from proto import gamenode_pb2 as pb

T0 = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
LEVELS = ["debug", "info", "info", "info", "warning", "error"]


def make_chunks(lines: int, per_chunk: int, sources: int) -> list[pb.LogChunk]:
    chunks = []
    for start in range(0, lines, per_chunk):
        n = start // per_chunk
        source = f"run:r{n % sources}" if n % 2 else f"instance:i{n % sources}"
        out = []
        for i in range(start, min(lines, start + per_chunk)):
            at = timestamp_pb2.Timestamp()
            at.FromDatetime(T0 + timedelta(milliseconds=i))
            marker = " NEEDLE" if i % 10_000 == 0 else ""
            out.append(pb.LogLine(at=at, level=LEVELS[i % len(LEVELS)], stream="stdout",
                                  text=f"[{i:08d}] game tick {i % 977} players={i % 64} latency={i % 50}ms{marker}"))
        chunks.append(pb.LogChunk(source=source, lines=out))
    return chunks


def bench_append(service: LogService, chunks: list[pb.LogChunk], lines: int) -> tuple[float, list[float]]:
    calls = []
    started = time.perf_counter()
    for c in chunks:
        t = time.perf_counter()
        service.append("n1", c)
        calls.append(time.perf_counter() - t)
    service.flush()
    elapsed = time.perf_counter() - started
    assert service.stats().dropped == 0
    return lines / elapsed, calls


def bench_query(service: LogService, name: str, query: LogQuery, rounds: int = 3) -> None:
    times, count = [], 0
    for _ in range(rounds):
        t = time.perf_counter()
        count = len(service.query(query))
        times.append(time.perf_counter() - t)
    print(f"  query {name:<28} {statistics.median(times) * 1000:8.0f} ms  ({count} entries)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lines", type=int, default=1_000_000)
    parser.add_argument("--chunk", type=int, default=100)
    parser.add_argument("--sources", type=int, default=20)
    args = parser.parse_args()
    chunks = make_chunks(args.lines, args.chunk, args.sources)
    with tempfile.TemporaryDirectory() as tmp:
        service = LogService(LogStore(Path(tmp) / "logs"), queue_size=args.lines + 1)
        try:
            rate, calls = bench_append(service, chunks, args.lines)
            size = sum(p.stat().st_size for p in (Path(tmp) / "logs").rglob("*.log*"))
            print(f"append: {args.lines:,} lines in {len(chunks):,} chunks → {rate:,.0f} lines/s into files "
                  f"({size / 1e6:.0f} MB)")
            calls.sort()
            median, p99 = calls[len(calls) // 2], calls[int(len(calls) * 0.99)]
            print(f"append() per {args.chunk}-line chunk (event loop time): median {median * 1e6:.0f} µs, "
                  f"p99 {p99 * 1e6:.0f} µs, max {calls[-1] * 1e6:.0f} µs")
            print(f"query over {args.lines:,} lines:")
            bench_query(service, "q substring (rare)", LogQuery(q="NEEDLE"))
            bench_query(service, "q regex (rare)", LogQuery(q=r"players=\d+ .*NEEDLE$", regex=True))
            bench_query(service, "level=error", LogQuery(level="error"))
            bench_query(service, "since..until (1 s)", LogQuery(since=T0 + timedelta(seconds=500),
                                                                  until=T0 + timedelta(seconds=501)))
            bench_query(service, "no filter (last 1000)", LogQuery())
            bench_query(service, "one instance, q", LogQuery(instance="i0", q="NEEDLE"))
        finally:
            service.close()


if __name__ == "__main__":
    main()
