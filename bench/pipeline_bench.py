"""Pipeline bench: platform-start to healthy through a real hub and agent vs the docker CLI.

    python bench/pipeline_bench.py [--rounds 7]

Needs the testbed: a running dockerd, `docker-registry` and a static busybox
(see DESIGN.md). It starts a local registry, pushes a tiny busybox "game"
image, a hub and one agent, and then alternates, each round from an empty
local image cache:

- gamenode: `POST /api/v1/instances` (placement, run dispatch) until the run
  has succeeded — pull, port allocation, container start, and an HTTP answer
  (`health: http`) — followed over `HubService.WatchRun` (no polling);
- docker CLI: `docker pull`, `docker run -d -p`, then polling the port over
  HTTP every 10 ms until it answers.

Prints both medians and their ratio (target ≤ 1.3; DESIGN.md measured
0.54-0.62 s for the CLI path here).
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(1, str(Path(__file__).resolve().parents[1] / "tests"))

from _procs import REPO_ROOT, Hub, clean_env, start_hub
from testbed.docker import rootfs_tar

from proto import gamenode_pb2 as pb
from proto import gamenode_pb2_grpc as pb_grpc

NODE = "bench-node"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def sh(*args: str) -> str:
    return subprocess.run(args, check=True, capture_output=True, text=True).stdout.strip()


@contextmanager
def local_registry(root: Path) -> Iterator[str]:
    address = f"127.0.0.1:{free_port()}"
    config = root / "registry.yml"
    config.write_text(f"version: 0.1\nstorage:\n  filesystem:\n    rootdirectory: {root / 'blobs'}\n"
                      f"http:\n  addr: {address}\n")
    proc = subprocess.Popen(["docker-registry", "serve", str(config)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        for _ in range(100):
            with suppress(httpx.HTTPError):
                if httpx.get(f"http://{address}/v2/").status_code == 200:
                    break
            time.sleep(0.1)
        yield address
    finally:
        proc.terminate()
        proc.wait()


def push_game(registry: str, root: Path) -> str:
    busybox = shutil.which("busybox")
    if busybox is None:
        raise SystemExit("needs a static busybox (Debian package busybox-static)")
    tar = root / "rootfs.tar"
    tar.write_bytes(rootfs_tar(Path(busybox), "bench"))
    ref = f"{registry}/game/bench:1"
    sh("docker", "import", "--change", 'CMD ["httpd", "-f", "-p", "8080", "-h", "/www"]', str(tar), ref)
    sh("docker", "push", ref)
    forget(ref)
    return ref


def forget(ref: str) -> None:
    """Remove the local image so that the next round really pulls."""
    subprocess.run(["docker", "rmi", "-f", ref], capture_output=True, check=False)


def http_answers(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1) as sock:
            sock.sendall(b"GET / HTTP/1.0\r\n\r\n")
            return sock.recv(16).startswith(b"HTTP/1.")
    except OSError:
        return False


def docker_cli_round(ref: str) -> float:
    port = free_port()
    name = f"bench-cli-{port}"
    started = time.perf_counter()
    sh("docker", "pull", "-q", ref)
    sh("docker", "run", "-d", "--name", name, "-p", f"127.0.0.1:{port}:8080", ref)
    while not http_answers(port):
        time.sleep(0.01)
    elapsed = time.perf_counter() - started
    sh("docker", "rm", "-f", name)
    return elapsed


async def watch_until_done(hub: Hub, run_id: str) -> str:
    async with hub.console_channel() as channel:
        stub = pb_grpc.HubServiceStub(channel)
        state = ""
        async for run in stub.WatchRun(pb.GetRunRequest(run_id=run_id), metadata=hub.grpc_metadata):
            state = run.state
        return state


def gamenode_round(api: httpx.Client, hub: Hub, card: str) -> float:
    started = time.perf_counter()
    r = api.post("/api/v1/instances", json={"game": card, "params": {"health": "http"}})
    r.raise_for_status()
    launched = r.json()
    state = asyncio.run(watch_until_done(hub, launched["run_id"]))
    elapsed = time.perf_counter() - started
    if state != "succeeded":
        answer = api.get(f"/api/v1/runs/{launched['run_id']}").text
        raise SystemExit(f"run {launched['run_id']} ended {state}: {answer}")
    stop = api.delete(f"/api/v1/instances/{launched['instance']['id']}")
    stop.raise_for_status()
    if stop.status_code == 202:
        asyncio.run(watch_until_done(hub, stop.json()["run_id"]))
    return elapsed


def start_fleet(root: Path, ref: str) -> tuple[subprocess.Popen[bytes], httpx.Client, Hub]:
    hub = start_hub(root / "data")
    api = httpx.Client(base_url=hub.url, timeout=30, headers=hub.headers)
    api.post("/api/v1/nodes", json={"id": NODE, "name": NODE, "type": "physical"}).raise_for_status()
    token_file = root / "token"
    token_file.write_text(api.post(f"/api/v1/nodes/{NODE}/token").json()["token"])
    token_file.chmod(0o600)
    agent = subprocess.Popen([sys.executable, "-m", "agent", "--hub", hub.grpc, "--node-id", NODE, "--token",
                              f"@{token_file}", "--state-dir", str(root / "agent"), "--ca", str(hub.ca_file)],
                             cwd=REPO_ROOT,
                             env=clean_env(), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)
    for _ in range(300):
        if api.get(f"/api/v1/nodes/{NODE}").json().get("online"):
            break
        time.sleep(0.1)
    else:
        raise SystemExit("the agent did not come online")
    api.post("/api/v1/platforms", json={"id": "bench", "name": "bench", "pipeline": "platform-start"}
             ).raise_for_status()
    api.post("/api/v1/gamecards", json={"id": "bench", "name": "bench", "platform": "bench",
                                        "versions": [{"version": "1.0.0", "image": ref}]}).raise_for_status()
    return agent, api, hub


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="pipeline-bench-") as tmp:
        root = Path(tmp)
        with local_registry(root) as registry:
            ref = push_game(registry, root)
            agent, api, hub = start_fleet(root, ref)
            try:
                gamenode_round(api, hub, "bench")  # warm-up: first imports, first connection
                forget(ref)
                ours, cli = [], []
                for _ in range(args.rounds):
                    ours.append(gamenode_round(api, hub, "bench"))
                    forget(ref)
                    cli.append(docker_cli_round(ref))
                    forget(ref)
            finally:
                agent.terminate()
                agent.wait()
                hub.stop()
                api.close()
    report(ours, cli)


def report(ours: list[float], cli: list[float]) -> None:
    m_ours, m_cli = statistics.median(ours), statistics.median(cli)
    print(f"{'path':<34}{'median':>9}{'min':>9}{'max':>9}")
    print(f"{'gamenode platform-start (hub+agent)':<34}{m_ours:>8.3f}s{min(ours):>8.3f}s{max(ours):>8.3f}s")
    print(f"{'docker pull + run + HTTP poll':<34}{m_cli:>8.3f}s{min(cli):>8.3f}s{max(cli):>8.3f}s")
    print(f"ratio gamenode / docker CLI: {m_ours / m_cli:.2f} (target <= 1.3), {len(ours)} rounds each")


if __name__ == "__main__":
    main()
