"""`gamenode demo`: a seeded hub and three real local agents that bring their nodes online."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import psutil

from console.hub.demo import DEMO_AGENT_NODES

REPO_ROOT = Path(__file__).resolve().parents[2]
_API = re.compile(r"^\s+REST API\s+(http://\S+)/api/v1/nodes")


def _online(api: httpx.Client) -> set[str]:
    return {n["id"] for n in api.get("/api/v1/nodes", params={"online": "true"}).json()}


def test_demo_brings_three_local_agents_online_and_stops_them_on_ctrl_c(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GAMENODE_")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "console.cli", "demo", "--headless", "--data-dir", str(tmp_path / "demo"),
         "--http-listen", "127.0.0.1:0", "--grpc-listen", "127.0.0.1:0"],
        cwd=REPO_ROOT, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert proc.stdout is not None
        url = None
        for line in proc.stdout:
            if m := _API.match(line):
                url = m.group(1)
                break
        assert url, "the demo never printed its REST address"
        agents = [p for p in psutil.Process(proc.pid).children() if "agent" in p.cmdline()]
        assert len(agents) == len(DEMO_AGENT_NODES)
        token = (tmp_path / "demo" / "admin.token").read_text().strip()
        with httpx.Client(base_url=url, timeout=10, headers={"Authorization": f"Bearer {token}"}) as api:
            assert len(api.get("/api/v1/nodes").json()) == 6  # the seeded fleet
            deadline = time.monotonic() + 60
            while _online(api) != set(DEMO_AGENT_NODES) and time.monotonic() < deadline:
                time.sleep(0.2)
            assert _online(api) == set(DEMO_AGENT_NODES)
            node = api.get(f"/api/v1/nodes/{DEMO_AGENT_NODES[0]}").json()
            assert node["hardware"]["cpu"]["cores"] >= 1  # this machine's inventory, from the agent
            assert node["metrics"], "the latest sample fills the node's metrics"

        proc.send_signal(signal.SIGINT)
        assert proc.wait(30) == 0
        _, alive = psutil.wait_procs(agents, timeout=15)
        assert alive == []
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()
