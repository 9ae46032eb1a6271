"""Agent footprint: a real agent connected to a real hub, idle, for a while.

    python bench/agent_footprint.py [--seconds 60]

Prints the agent's RSS and CPU (% of one core) over the window, and the same
for `prometheus-node-exporter` (Debian package) started beside it as a
reference. Targets (DESIGN.md): agent < 64 MB, < 0.5 % of a core.
"""

from __future__ import annotations

import argparse
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _procs import REPO_ROOT, Usage, clean_env, measure, start_hub


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def start_agent(hub_grpc: str, node_id: str, token_file: Path, state_dir: Path, ca_file: Path
                ) -> subprocess.Popen[bytes]:
    cmd = [sys.executable, "-m", "agent", "--hub", hub_grpc, "--node-id", node_id,
           "--token", f"@{token_file}", "--state-dir", str(state_dir), "--ca", str(ca_file)]
    return subprocess.Popen(cmd, cwd=REPO_ROOT, env=clean_env(), stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def wait_online(api: httpx.Client, node_id: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if api.get(f"/api/v1/nodes/{node_id}").json().get("online"):
            return
        time.sleep(0.2)
    raise RuntimeError(f"node {node_id} did not come online")


def node_exporter(seconds: float) -> Usage | None:
    exe = shutil.which("prometheus-node-exporter")
    if exe is None:
        return None
    port = free_port()
    proc = subprocess.Popen([exe, f"--web.listen-address=127.0.0.1:{port}"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        time.sleep(2)
        return measure(proc.pid, seconds)
    finally:
        proc.terminate()
        proc.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=60.0)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="gamenode-footprint-") as tmp:
        hub = start_hub(Path(tmp) / "hub")
        agent = None
        try:
            api = httpx.Client(base_url=hub.url, timeout=10, headers=hub.headers)
            api.post("/api/v1/nodes", json={"id": "bench-node", "name": "bench-node", "type": "virtual"})
            token = api.post("/api/v1/nodes/bench-node/token").json()["token"]
            token_file = Path(tmp) / "token"
            token_file.write_text(token)
            agent = start_agent(hub.grpc, "bench-node", token_file, Path(tmp) / "agent", hub.ca_file)
            wait_online(api, "bench-node")
            time.sleep(3)  # past the first inventory and metrics
            usage = measure(agent.pid, args.seconds)
            still_online = api.get("/api/v1/nodes/bench-node").json()["online"]
        finally:
            if agent is not None:
                agent.terminate()
                agent.wait(30)
            hub.stop()
    reference = node_exporter(args.seconds)

    print(f"agent footprint over {args.seconds:.0f} s, connected to a local hub (node online: {still_online})")
    print()
    print(f"{'process':<28} {'RSS MB':>8} {'CPU % of a core':>16}")
    print(f"{'gamenode agent':<28} {usage.rss_mb:>8.1f} {usage.cpu_percent:>16.2f}")
    if reference is None:
        print(f"{'prometheus-node-exporter':<28} {'(not installed: apt-get install prometheus-node-exporter)':>25}")
    else:
        print(f"{'prometheus-node-exporter':<28} {reference.rss_mb:>8.1f} {reference.cpu_percent:>16.2f}")
    print()
    print("targets: agent < 64 MB RSS, < 0.5 % of a core")


if __name__ == "__main__":
    main()
