"""Sample fleet for `gamenode demo`: a handful of nodes, game cards and platforms."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

from agent.identity import IdentityStore
from console.models import InstanceState
from console.service import Services
from console.service.ca import CA_FILE

__all__ = ["DEMO_AGENT_NODES", "DemoAgents", "seed_demo"]


def _node(id: str, location: str, region: str, rack: str, cores: int, mem_gb: int, gpus: list[str],
          ip: str, kind: str = "physical", model: str = "Dell PowerEdge R750") -> dict[str, Any]:
    return {
        "id": id, "name": id, "model": model, "type": kind, "location": location,
        "hardware": {
            "cpu": {"model": "AMD EPYC 7543 32-Core", "cores": cores},
            "memory_mb": mem_gb * 1024,
            "gpus": [{"model": g, "memory_mb": 24576} for g in gpus],
            "disks": [{"mount": "/", "size_gb": 960, "kind": "nvme"}],
        },
        "network": {"ip": ip, "bandwidth_mbps": 10000, "ports": {"range": "7000-7999"}},
        "labels": {"region": region, "rack": rack, **({"gpu": "l4"} if gpus else {})},
    }


NODES = [
    _node("eu-fra-01", "Frankfurt DC2", "eu", "r1", 32, 128, ["NVIDIA L4", "NVIDIA L4"], "10.10.1.11"),
    _node("eu-fra-02", "Frankfurt DC2", "eu", "r1", 32, 128, ["NVIDIA L4"], "10.10.1.12"),
    _node("eu-ams-01", "Amsterdam AM5", "eu", "r3", 16, 64, [], "10.10.2.11"),
    _node("us-iad-01", "Ashburn IAD1", "us", "r7", 64, 256, ["NVIDIA L4"] * 4, "10.20.1.11"),
    _node("us-iad-02", "Ashburn IAD1", "us", "r7", 8, 32, [], "10.20.1.12", kind="virtual", model="c6i.2xlarge"),
    _node("ap-sgp-01", "Singapore SG3", "ap", "r2", 16, 64, [], "10.30.1.11", kind="virtual",
          model="n2-standard-16"),
]

PLATFORMS = [
    {"id": "dedicated", "name": "Dedicated server (Docker)", "pipeline": "platform-start",
     "description": "A game's dedicated server in one container",
     "params": {"network": "gamenode", "restart": "unless-stopped"}, "config": {"log_level": "info"}},
    {"id": "cloud-gpu", "name": "Cloud rendering (GPU)", "pipeline": "platform-start",
     "description": "GPU-rendered cloud gaming sessions", "required_labels": {"gpu": "l4"},
     "params": {"network": "gamenode"}, "config": {"encoder": "nvenc", "fps": 60}},
]

GAMECARDS = [
    {"id": "arena-shooter", "name": "Arena Shooter", "platform": "dedicated", "labels": {"genre": "fps"},
     "versions": [
         {"version": "1.4.2", "image": "registry.local/arena-shooter:1.4.2",
          "resources": {"cpu": 2, "memory_mb": 4096}, "params": {"max_players": 16}},
         {"version": "1.5.0", "image": "registry.local/arena-shooter:1.5.0",
          "resources": {"cpu": 2, "memory_mb": 4096}, "params": {"max_players": 24}},
     ]},
    {"id": "kart-racer", "name": "Kart Racer", "platform": "dedicated", "labels": {"genre": "racing"},
     "versions": [
         {"version": "0.9.0", "image": "registry.local/kart-racer:0.9.0", "status": "deprecated",
          "resources": {"cpu": 1, "memory_mb": 2048}},
         {"version": "1.0.0", "image": "registry.local/kart-racer:1.0.0",
          "resources": {"cpu": 1, "memory_mb": 2048}},
     ]},
    {"id": "open-world", "name": "Open World (streamed)", "platform": "cloud-gpu", "labels": {"genre": "rpg"},
     "versions": [
         {"version": "2.0.0", "image": "registry.local/open-world:2.0.0",
          "resources": {"cpu": 8, "memory_mb": 16384, "gpu": 1}},
     ]},
]


def seed_demo(services: Services) -> bool:
    """Fill an empty data directory; a directory that has nodes is left alone."""
    if services.nodes.list_nodes().total:
        return False
    for platform in PLATFORMS:
        services.platforms.create_platform(platform)
    for card in GAMECARDS:
        services.gamecards.create_card(card)
    for node in NODES:
        services.nodes.create_node(node, actor="demo")
    services.nodes.update_node_status("eu-fra-01", "online", "demo agent connected", "demo")
    services.nodes.update_node_status("eu-fra-01", "ready", "checks passed", "demo")
    services.nodes.update_node_status("us-iad-01", "online", "demo agent connected", "demo")
    services.nodes.update_node_status("ap-sgp-01", "maintenance", "kernel upgrade", "demo")
    running = services.instances.create_instance({"id": "arena-eu-1", "node_id": "eu-fra-01",
                                                  "game": "arena-shooter",
                                                  "ports": [{"name": "game", "container_port": 7777}]})
    for state in (InstanceState.PREPARING, InstanceState.STARTING, InstanceState.RUNNING):
        services.instances.transition(running.id, state)
    services.instances.create_instance({"id": "world-us-1", "node_id": "us-iad-01", "game": "open-world"})
    return True


DEMO_AGENT_NODES = ("eu-fra-01", "eu-fra-02", "us-iad-01")
"""Nodes the demo's local agents stand in for (all three run on this machine)."""


class DemoAgents:
    """Real agent processes on this machine, one per demo node, logging to files.

    Each keeps its identity in `root/<node>/state` across demo runs; a node
    without a usable certificate gets a join token (`root/<node>/token`) to
    join with. The agents pin the hub's CA (`DATA_DIR/ca.pem`, the parent of
    `root`), or talk plaintext to an `--insecure` demo hub.
    """

    def __init__(self, root: Path, tokens: dict[str, str | None]) -> None:
        self.root = root
        self.tokens = tokens
        """Node id → the join token issued for it this run (None: it has a certificate already)."""
        self.procs: list[subprocess.Popen[bytes]] = []

    @classmethod
    def prepare(cls, services: Services, root: Path) -> DemoAgents:
        """A join token for each demo node that cannot connect with the certificate it has (issuing one revokes
        the node's earlier certificate)."""
        tokens: dict[str, str | None] = {}
        for node_id in DEMO_AGENT_NODES:
            identity, problem = IdentityStore(root / node_id / "state").usable(node_id)
            usable = identity is not None and not problem and services.credentials.has_credential(node_id)
            tokens[node_id] = None if usable else services.credentials.issue(node_id)
        return cls(root, tokens)

    def start(self, hub_grpc: str, *, insecure: bool = False) -> None:
        ca_file = self.root.parent / CA_FILE
        for node_id, token in self.tokens.items():
            home = self.root / node_id
            home.mkdir(parents=True, exist_ok=True, mode=0o700)
            token_file = home / "token"
            if token is not None:
                token_file.touch(mode=0o600)
                token_file.write_text(token)
            command = [sys.executable, "-m", "agent", "--hub", hub_grpc, "--node-id", node_id,
                       "--state-dir", str(home / "state")]
            command += ["--insecure"] if insecure else ["--ca", str(ca_file)]
            command += ["--token", f"@{token_file}"] if token_file.exists() else []
            with (home / "agent.log").open("ab") as log:
                self.procs.append(subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=log, stderr=log))

    def stop(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.terminate()
        for proc in self.procs:
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
