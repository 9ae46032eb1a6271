"""Hub scale: simulated agents on real gRPC streams against a real hub.

    python bench/hub_scale.py --agents 10000 [--procs 2] [--seconds 60] [--pings 300]

Sets up N nodes with join tokens in a fresh data dir, starts a real hub (with
`--insecure`: plaintext, so that the figures measure the hub rather than TLS),
then `--procs` load-generator processes that each hold their share of the
agents: each joins (`Join`: a key made here, a CSR, its certificate back), then
one TCP connection and one `AgentService.Connect` stream per agent, Hello with
the certificate and its proof, heartbeats and metrics at the intervals the hub
hands out, command acks.
While all are connected it measures, over `--seconds`: the hub's RSS and CPU,
heartbeats/s, bytes on loopback per agent per minute, and the command
round-trip (REST `POST /nodes/{id}/ping`: hub → agent → ack) p50/p99.
Targets (DESIGN.md): 10,000 connected, hub RSS < 1.5 GB, round-trip p99 < 250 ms.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import resource
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _procs import REPO_ROOT, clean_env, measure, start_hub


def raise_fd_limit() -> int:
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return hard


# --- the load generator (a child process) -------------------------------------


async def _agent(hub: str, options: list[tuple[str, int]], node_id: str, token: str, stats: dict[str, int],
                 stop: asyncio.Event, gate: asyncio.Semaphore) -> None:
    import grpc
    from google.protobuf.timestamp_pb2 import Timestamp

    from proto import gamenode_pb2 as pb

    seq = 0
    out: asyncio.Queue[pb.AgentMessage | None] = asyncio.Queue()

    async def requests():
        while True:
            msg = await out.get()
            if msg is None:
                return
            yield msg

    async with gate:
        opened = await _hello(hub, options, node_id, token, out, requests())
    if opened is None:
        stats["refused"] += 1
        return
    channel, call, first = opened
    stats["connected"] += 1
    hb = first.welcome.heartbeat_interval_ms / 1000
    mi = first.welcome.metrics_interval_ms / 1000
    sample = pb.MetricsSample(cpu_percent=12.5, load1=0.4, memory_total_bytes=32 << 30,
                              memory_used_bytes=9 << 30, memory_percent=28.1, instances=1)

    async def ticker(interval: float, make, counter: str) -> None:
        await asyncio.sleep(random.uniform(0, interval))
        while not stop.is_set():
            await out.put(make())
            stats[counter] += 1
            await asyncio.sleep(interval)

    def heartbeat() -> pb.AgentMessage:
        ts = Timestamp()
        ts.GetCurrentTime()
        return pb.AgentMessage(heartbeat=pb.Heartbeat(sent_at=ts, instances=1, runtime="available"))

    def metrics() -> pb.AgentMessage:
        return pb.AgentMessage(metrics=pb.MetricsBatch(samples=[sample]))

    tasks = [asyncio.create_task(ticker(hb, heartbeat, "heartbeats")),
             asyncio.create_task(ticker(mi, metrics, "metrics"))]
    try:
        while (msg := await call.read()) is not grpc.aio.EOF:
            if msg.HasField("command"):
                seq += 1
                await out.put(pb.AgentMessage(seq=seq, command_ack=pb.CommandAck(
                    command_id=msg.command.command_id, ok=True)))
                stats["commands"] += 1
    except grpc.aio.AioRpcError:
        pass
    finally:
        stats["connected"] -= 1
        stats["dropped"] += 0 if stop.is_set() else 1
        for t in tasks:
            t.cancel()
        await out.put(None)
        await channel.close()


async def _hello(hub: str, options: list[tuple[str, int]], node_id: str, token: str, out: asyncio.Queue,
                 requests) -> tuple | None:
    """Join, open the stream and say Hello: (channel, call, the Welcome message), or None when refused."""
    import grpc
    from _simagent import open_stream

    from proto import gamenode_pb2 as pb
    from proto import gamenode_pb2_grpc as pb_grpc

    try:
        channel, proof = await open_stream(hub, node_id, token, None, options)
    except grpc.aio.AioRpcError:
        return None
    call = pb_grpc.AgentServiceStub(channel).Connect(requests)
    await out.put(pb.AgentMessage(hello=pb.Hello(node_id=node_id, agent_version="bench", first_unacked_seq=1,
                                                 **proof)))
    try:
        first = await call.read()
    except grpc.aio.AioRpcError:
        first = None
    if first is None or first is grpc.aio.EOF or not first.HasField("welcome"):
        await channel.close()
        return None
    return channel, call, first


async def _generate(hub: str, tokens: list[tuple[str, str]]) -> None:
    options = [("grpc.use_local_subchannel_pool", 1), ("grpc.keepalive_time_ms", 30000),
               ("grpc.keepalive_permit_without_calls", 1), ("grpc.http2.max_pings_without_data", 0)]
    stats = {"connected": 0, "refused": 0, "dropped": 0, "heartbeats": 0, "metrics": 0, "commands": 0}
    stop = asyncio.Event()
    gate = asyncio.Semaphore(200)
    loop = asyncio.get_running_loop()
    loop.add_reader(sys.stdin.fileno(), stop.set)  # the parent closes our stdin to stop us
    agents = [asyncio.create_task(_agent(hub, options, node_id, token, stats, stop, gate))
              for node_id, token in tokens]
    while not stop.is_set():
        print(json.dumps(stats), flush=True)
        await asyncio.sleep(1)
    for a in agents:
        a.cancel()
    await asyncio.gather(*agents, return_exceptions=True)


def generator_main(hub: str, token_file: Path) -> None:
    raise_fd_limit()
    import gc

    gc.freeze()
    tokens = [tuple(line.split()) for line in token_file.read_text().splitlines() if line.strip()]
    asyncio.run(_generate(hub, tokens))  # type: ignore[arg-type]


# --- the driver ---------------------------------------------------------------


def setup_fleet(data_dir: Path, n: int) -> list[tuple[str, str]]:
    """N nodes and a join token each, written straight through the hub's own services."""
    from console.service import Services
    from console.store import Stores

    stores = Stores.open(data_dir)
    try:
        services = Services.over(stores)
        tokens = []
        for i in range(n):
            node_id = f"sim-{i:05d}"
            services.nodes.create_node({"id": node_id, "name": node_id, "type": "virtual",
                                        "labels": {"rack": f"r{i % 50}"}})
            tokens.append((node_id, services.credentials.issue(node_id)))
        return tokens
    finally:
        stores.close()


class Generator:
    def __init__(self, hub: str, token_file: Path) -> None:
        self.proc = subprocess.Popen([sys.executable, __file__, "--generator", hub, str(token_file)],
                                     cwd=REPO_ROOT, env=clean_env(), stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, text=True)
        self.stats: dict[str, int] = {}
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.stats = json.loads(line)

    def stop(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        try:
            self.proc.wait(60)
        except subprocess.TimeoutExpired:
            self.proc.kill()


def lo_bytes() -> int:
    for line in Path("/proc/net/dev").read_text().splitlines():
        name, _, rest = line.partition(":")
        if name.strip() == "lo":
            fields = rest.split()
            return int(fields[0]) + int(fields[8])
    return 0


def total(gens: list[Generator], key: str) -> int:
    return sum(g.stats.get(key, 0) for g in gens)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--agents", type=int, default=1000)
    parser.add_argument("--procs", type=int, default=2)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--pings", type=int, default=300)
    parser.add_argument("--connect-timeout", type=float, default=300.0)
    parser.add_argument("--generator", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.generator:
        generator_main(args.generator[0], Path(args.generator[1]))
        return

    import httpx

    limit = raise_fd_limit()
    with tempfile.TemporaryDirectory(prefix="gamenode-scale-") as tmp:
        t0 = time.monotonic()
        tokens = setup_fleet(Path(tmp) / "hub", args.agents)
        setup_s = time.monotonic() - t0
        hub = start_hub(Path(tmp) / "hub", args=["--insecure"])
        gens: list[Generator] = []
        try:
            for k in range(args.procs):
                share = tokens[k :: args.procs]
                token_file = Path(tmp) / f"tokens-{k}"
                token_file.write_text("".join(f"{n} {t}\n" for n, t in share))
                gens.append(Generator(hub.grpc, token_file))
            t0 = time.monotonic()
            while total(gens, "connected") < args.agents and time.monotonic() - t0 < args.connect_timeout:
                time.sleep(0.5)
            connect_s = time.monotonic() - t0
            api = httpx.Client(base_url=hub.url, timeout=30, headers=hub.headers)
            online = int(api.get("/api/v1/nodes", params={"online": "true", "limit": 0}).headers["x-total-count"])

            hb0, b0, w0 = total(gens, "heartbeats"), lo_bytes(), time.monotonic()
            rtts: list[float] = []
            failures = 0
            usage_box: list[object] = []
            sampler = threading.Thread(target=lambda: usage_box.append(measure(hub.proc.pid, args.seconds)))
            sampler.start()
            rng = random.Random(1)
            gap = args.seconds / max(args.pings, 1)
            for _ in range(args.pings):
                node_id = tokens[rng.randrange(len(tokens))][0]
                r = api.post(f"/api/v1/nodes/{node_id}/ping")
                if r.status_code == 200:
                    rtts.append(float(r.json()["rtt_ms"]))
                else:
                    failures += 1
                time.sleep(gap)
            sampler.join()
            window = time.monotonic() - w0
            online_after = int(api.get("/api/v1/nodes", params={"online": "true", "limit": 0}).headers["x-total-count"])
            heartbeats = (total(gens, "heartbeats") - hb0) / window
            per_agent_min = (lo_bytes() - b0) / max(total(gens, "connected"), 1) / (window / 60)
            usage = usage_box[0]
            connected, dropped, refused = (total(gens, k) for k in ("connected", "dropped", "refused"))
        finally:
            for g in gens:
                g.stop()
            hub.stop()

    rtts.sort()
    print(f"hub scale: {args.agents} simulated agents in {args.procs} processes, fd limit {limit}")
    print(f"setup {setup_s:.1f} s (nodes + join tokens), all joined and connected after {connect_s:.1f} s")
    print()
    print(f"{'figure':<36} {'value':>12}   target")
    print(f"{'agents connected (generators)':<36} {connected:>12}   {args.agents}")
    print(f"{'nodes online on disk, at connect':<36} {online:>12}")
    print(f"{'nodes online on disk, after window':<36} {online_after:>12}   {args.agents}")
    print(f"{'streams dropped / refused':<36} {f'{dropped} / {refused}':>12}   0 / 0")
    print(f"{'hub RSS MB':<36} {usage.rss_mb:>12.0f}   < 1536")  # type: ignore[attr-defined]
    print(f"{'hub CPU % of a core':<36} {usage.cpu_percent:>12.1f}")  # type: ignore[attr-defined]
    print(f"{'heartbeats/s handled':<36} {heartbeats:>12.0f}")
    print(f"{'loopback bytes per agent per minute':<36} {per_agent_min:>12.0f}")
    if rtts:
        print(f"{'command round-trip p50 ms':<36} {statistics.median(rtts):>12.1f}")
        print(f"{'command round-trip p99 ms':<36} {rtts[min(int(len(rtts) * 0.99), len(rtts) - 1)]:>12.1f}   < 250")
    print(f"{'pings failed':<36} {failures:>12}   0")


if __name__ == "__main__":
    main()
