"""TUI: the console over a real hub with 1,000 simulated nodes updating every second.

    python bench/tui_bench.py [--nodes 1000] [--seconds 30] [--presses 200]

Sets up N nodes with join tokens in a fresh data dir (bench/hub_scale.py's
`setup_fleet`), starts a real hub, then two child processes:

- a load generator that joins each node (`Join` with its join token) and holds
  one `AgentService.Connect` stream (mTLS) per node that sends a metrics sample
  every second with new CPU, memory, disk and network figures (and heartbeats
  at the interval the hub hands out);
- the console: `GamenodeApp` over a real `HubClient`, headless
  (`App.run_test`), on the fleet screen.

It measures the console process's CPU (one core = 100 %) while idle (every
node offline, nothing changing) and over `--seconds` with every node updating
each second, then the key press → repaint latency: `--presses` presses of
down/up 100 ms apart, each timed from posting the key event until the cursor
has moved and the screen has been repainted (`call_after_refresh`). Pilot's own
`press` is not used for timing: it waits for the process to go idle, which a
console receiving 1,000 updates a second never quite does. Targets (DESIGN.md): p99 < 100 ms, CPU < 30 %.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _procs import REPO_ROOT, clean_env, measure, start_hub
from hub_scale import raise_fd_limit, setup_fleet

SIZE = (200, 50)
"""The console's terminal size (columns, lines)."""


# --- the load generator (a child process) -------------------------------------


async def _agent(hub: str, node_id: str, token: str, ca_pem: bytes, stats: dict[str, int], stop: asyncio.Event,
                 gate: asyncio.Semaphore) -> None:
    import grpc
    from _simagent import open_stream

    from proto import gamenode_pb2 as pb
    from proto import gamenode_pb2_grpc as pb_grpc

    out: asyncio.Queue[Any] = asyncio.Queue()

    async def requests() -> Any:
        while (msg := await out.get()) is not None:
            yield msg

    async with gate:  # join (Endpoints, Join), then the stream over mTLS
        channel, _ = await open_stream(hub, node_id, token, ca_pem, [("grpc.use_local_subchannel_pool", 1)])
        call = pb_grpc.AgentServiceStub(channel).Connect(requests())
        await out.put(pb.AgentMessage(hello=pb.Hello(node_id=node_id, agent_version="bench", first_unacked_seq=1)))
        first = await call.read()
    if first is grpc.aio.EOF or not first.HasField("welcome"):
        stats["refused"] += 1
        await channel.close()
        return
    stats["connected"] += 1
    heartbeat_s = first.welcome.heartbeat_interval_ms / 1000

    async def beat() -> None:
        while not stop.is_set():
            await asyncio.sleep(heartbeat_s)
            await out.put(pb.AgentMessage(heartbeat=pb.Heartbeat(instances=1, runtime="available")))

    async def report() -> None:
        await asyncio.sleep(random.uniform(0, 1))
        while not stop.is_set():
            cpu = random.uniform(0, 100)
            sample = pb.MetricsSample(
                cpu_percent=cpu, memory_total_bytes=32 << 30, memory_used_bytes=int((32 << 30) * cpu / 100),
                memory_percent=random.uniform(20, 80), instances=random.randint(0, 4),
                disks=[pb.DiskSample(mount="/", total_bytes=500 << 30, used_bytes=200 << 30,
                                     percent=random.uniform(30, 50))],
                nets=[pb.NetSample(interface="eth0", rx_bytes_per_s=random.uniform(1e5, 1e8),
                                   tx_bytes_per_s=random.uniform(1e5, 1e7))])
            sample.at.GetCurrentTime()
            await out.put(pb.AgentMessage(metrics=pb.MetricsBatch(samples=[sample])))
            stats["metrics"] += 1
            await asyncio.sleep(1.0)

    tasks = [asyncio.create_task(beat()), asyncio.create_task(report())]
    try:
        while (await call.read()) is not grpc.aio.EOF:
            pass
    except grpc.aio.AioRpcError:
        pass
    finally:
        stats["connected"] -= 1
        for task in tasks:
            task.cancel()
        await out.put(None)
        await channel.close()


async def _generate(hub: str, tokens: list[tuple[str, str]], ca_pem: bytes) -> None:
    stats = {"connected": 0, "refused": 0, "metrics": 0}
    stop = asyncio.Event()
    gate = asyncio.Semaphore(200)
    asyncio.get_running_loop().add_reader(sys.stdin.fileno(), stop.set)  # the parent closes our stdin
    agents = [asyncio.create_task(_agent(hub, n, t, ca_pem, stats, stop, gate)) for n, t in tokens]
    while not stop.is_set():
        print(json.dumps(stats), flush=True)
        await asyncio.sleep(1)
    for agent in agents:
        agent.cancel()
    await asyncio.gather(*agents, return_exceptions=True)


# --- the console (a child process) --------------------------------------------


async def _console(hub: str, nodes: int, presses: int, data_dir: str) -> None:
    from console.tui.app import GamenodeApp
    from console.tui.client import HubClient
    from console.tui.screens.fleet import FleetScreen

    token = (Path(data_dir) / "admin.token").read_text().strip()  # as `gamenode console --connect` finds them
    ca_pem = (Path(data_dir) / "ca.pem").read_bytes()
    app = GamenodeApp(lambda: HubClient(hub, token=token, ca_pem=ca_pem), target=hub)
    async with app.run_test(headless=True, size=SIZE):
        screen = app.screen
        assert isinstance(screen, FleetScreen)
        while screen.table.row_count < nodes:
            await asyncio.sleep(0.1)
        print(json.dumps({"ready": screen.table.row_count}), flush=True)
        await asyncio.to_thread(sys.stdin.readline)  # the parent says when to press keys
        latencies = []
        for i in range(presses):
            latencies.append(await _press(app, screen.table, "down" if (i // 20) % 2 == 0 else "up"))
            await asyncio.sleep(0.1)
        print(json.dumps({"latencies_ms": latencies, "rows": screen.table.row_count}), flush=True)
        await asyncio.to_thread(sys.stdin.readline)


async def _press(app: Any, table: Any, key: str) -> float:
    """Milliseconds from a key event to the repaint that shows its effect (the cursor moved)."""
    from textual import events

    loop = asyncio.get_running_loop()
    target = table.cursor_row + (1 if key == "down" else -1)
    start = time.perf_counter()
    app.post_message(events.Key(key, None))
    while table.cursor_row != target:
        await asyncio.sleep(0.0005)
    painted: asyncio.Future[None] = loop.create_future()
    app.call_after_refresh(lambda: painted.done() or painted.set_result(None))
    await painted
    return (time.perf_counter() - start) * 1000


# --- the driver ---------------------------------------------------------------


class Child:
    """A child process of this script; its stdout lines are JSON, the latest kept in `last`."""

    def __init__(self, *args: str) -> None:
        self.proc = subprocess.Popen([sys.executable, __file__, *args], cwd=REPO_ROOT, env=clean_env(),
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        self.lines: list[dict[str, Any]] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            if line.startswith("{"):
                self.lines.append(json.loads(line))

    def wait_for(self, key: str, timeout: float) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for line in reversed(self.lines):
                if key in line:
                    return line
            if self.proc.poll() is not None:
                raise RuntimeError(f"child {self.proc.args} exited with {self.proc.returncode}")
            time.sleep(0.1)
        raise TimeoutError(f"no {key!r} from {self.proc.args} in {timeout:g} s")

    def say(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write("go\n")
        self.proc.stdin.flush()

    def stop(self) -> None:
        assert self.proc.stdin is not None
        try:
            self.proc.stdin.close()
            self.proc.wait(30)
        except (subprocess.TimeoutExpired, BrokenPipeError):
            self.proc.kill()


def percentile(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1] if len(values) > 1 else values[0]


def run(args: argparse.Namespace) -> dict[str, Any]:
    raise_fd_limit()
    with tempfile.TemporaryDirectory(prefix="gamenode-tui-") as tmp:
        tokens = setup_fleet(Path(tmp) / "hub", args.nodes)
        hub = start_hub(Path(tmp) / "hub")
        children: list[Child] = []
        try:
            console = Child("--console", hub.grpc, str(args.nodes), str(args.presses), str(Path(tmp) / "hub"))
            children.append(console)
            console.wait_for("ready", 120)
            idle = measure(console.proc.pid, 10)
            token_file = Path(tmp) / "tokens"
            token_file.write_text("".join(f"{n} {t}\n" for n, t in tokens))
            generator = Child("--generator", hub.grpc, str(token_file), str(hub.ca_file))
            children.append(generator)
            deadline = time.monotonic() + 120
            while generator.wait_for("connected", 120)["connected"] < args.nodes and time.monotonic() < deadline:
                time.sleep(0.5)
            time.sleep(3)  # every node has reported at least once
            m0 = generator.wait_for("metrics", 5)["metrics"]
            busy = measure(console.proc.pid, args.seconds)
            m1 = generator.wait_for("metrics", 5)["metrics"]
            hub_usage = measure(hub.proc.pid, 5)
            console.say()
            result = console.wait_for("latencies_ms", args.presses * 0.5 + 60)
            console.say()
        finally:
            for child in reversed(children):
                child.stop()
            hub.stop()
    latencies = result["latencies_ms"]
    return {
        "nodes": args.nodes, "updates_per_s": (m1 - m0) / args.seconds, "idle_cpu": idle.cpu_percent,
        "busy_cpu": busy.cpu_percent, "rss_mb": busy.rss_mb, "hub_cpu": hub_usage.cpu_percent,
        "p50": statistics.median(latencies), "p99": percentile(latencies, 99), "max": max(latencies),
        "presses": len(latencies),
    }


def report(r: dict[str, Any], seconds: float) -> None:
    rows = [
        ("nodes (simulated agents)", f"{r['nodes']}", ""),
        ("metrics samples/s into the hub", f"{r['updates_per_s']:.0f}", ""),
        ("console CPU, idle (nothing changes)", f"{r['idle_cpu']:.1f} %", ""),
        (f"console CPU, all updating ({seconds:g} s)", f"{r['busy_cpu']:.1f} %", "< 30 %"),
        ("console RSS", f"{r['rss_mb']:.0f} MB", ""),
        ("hub CPU (for reference)", f"{r['hub_cpu']:.1f} %", ""),
        (f"key → repaint p50 ({r['presses']} presses)", f"{r['p50']:.1f} ms", ""),
        ("key → repaint p99", f"{r['p99']:.1f} ms", "< 100 ms"),
        ("key → repaint max", f"{r['max']:.1f} ms", ""),
    ]
    width = max(len(name) for name, _, _ in rows)
    print(f"{'figure':<{width}}  {'measured':>10}  target")
    for name, value, target in rows:
        print(f"{name:<{width}}  {value:>10}  {target}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--nodes", type=int, default=1000)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--presses", type=int, default=200)
    parser.add_argument("--generator", nargs=3, help=argparse.SUPPRESS)
    parser.add_argument("--console", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.generator:
        raise_fd_limit()
        tokens = [(n, t) for n, t in (line.split() for line in Path(args.generator[1]).read_text().splitlines())]
        asyncio.run(_generate(args.generator[0], tokens, Path(args.generator[2]).read_bytes()))
    elif args.console:
        profile = os.environ.get("TUI_BENCH_PROFILE")  # a path: cProfile stats of the console's loop go there
        if profile:
            import cProfile

            cProfile.runctx("asyncio.run(_console(args.console[0], int(args.console[1]), int(args.console[2]), "
                            "args.console[3]))",
                            globals(), {"args": args, "asyncio": asyncio}, profile)
        else:
            asyncio.run(_console(args.console[0], int(args.console[1]), int(args.console[2]), args.console[3]))
    else:
        report(run(args), args.seconds)


if __name__ == "__main__":
    main()
