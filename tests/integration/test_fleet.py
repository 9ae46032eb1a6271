"""A real fleet: a `gamenode hub` process and several real agent processes (`python -m agent`).

Nodes and their tokens come from the REST API; the agents connect with
`--token @FILE` and report their inventory and metrics. The tests kill
agents and the hub (SIGKILL and SIGTERM), restart the hub on the same data
dir and gRPC port, refuse and rotate credentials, and watch the fleet over
`HubService.WatchNodes`. Every wait polls with a generous timeout; no
duration is asserted. The hub runs with a 1 s heartbeat (metrics every 2 s)
and the agents with a 1 s reconnect backoff cap (`fleet_helpers`).
"""

from __future__ import annotations

import asyncio
import signal
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import httpx
import psutil
import pytest
import yaml
from fleet_helpers import WAIT, Fleet, admin_headers, free_port
from grpc import aio

from proto import gamenode_pb2 as pb
from proto import gamenode_pb2_grpc as pb_grpc

pytestmark = pytest.mark.slow

NODES = ["fleet-a", "fleet-b", "fleet-c"]
LABELS = {"fleet-a": {"region": "eu", "rack": "r1"}, "fleet-b": {"region": "eu", "rack": "r2"},
          "fleet-c": {"region": "us", "gpu": "none"}}
HUB_REASONS = ("agent disconnected", "the agent closed its stream")
"""Why the hub marks a node offline when its agent's stream ends (or "no heartbeat for N s")."""


@pytest.fixture
def fleet(tmp_path: Path) -> Iterator[Fleet]:
    fleet = Fleet(tmp_path)
    try:
        yield fleet
    finally:
        fleet.close()


def start_fleet(fleet: Fleet, grpc_port: int = 0) -> dict[str, dict[str, Any]]:
    """A hub and an agent for each of NODES (with LABELS); the nodes once all are online."""
    fleet.start_hub(grpc_port)
    tokens = {node_id: fleet.add_node(node_id, labels=LABELS[node_id], location="lab") for node_id in NODES}
    for node_id, token in tokens.items():
        fleet.start_agent(node_id, token)
    return fleet.wait_online(NODES)


def last_change(fleet: Fleet, node_id: str) -> dict[str, Any]:
    changes = fleet.history(node_id)
    assert changes, f"node {node_id} has no status history"
    return changes[-1]


def went_offline_by_hub(change: dict[str, Any]) -> bool:
    return (change["to_status"] == "offline" and change["by"] == "hub"
            and (change["reason"] in HUB_REASONS or change["reason"].startswith("no heartbeat for")))


# --- 1. a fleet comes online ------------------------------------------------------------


def test_three_agents_bring_their_nodes_online_with_inventory_and_metrics(fleet: Fleet) -> None:
    nodes = start_fleet(fleet)

    cores = psutil.cpu_count(logical=False) or psutil.cpu_count()
    memory_mb = psutil.virtual_memory().total // (1024 * 1024)
    interfaces = set(psutil.net_if_addrs())
    for node_id, node in nodes.items():
        assert node["labels"] == LABELS[node_id]
        assert node["last_online"], node
        hardware = node["hardware"]  # the agents run here: their inventory is this machine's
        assert hardware["cpu"]["cores"] == cores
        assert hardware["cpu"]["threads"] == psutil.cpu_count()
        assert hardware["cpu"]["model"]
        assert hardware["memory_mb"] == memory_mb
        assert hardware["hostname"] == socket.gethostname()
        assert hardware["arch"] and hardware["kernel"] and hardware["os"]
        assert isinstance(hardware["disks"], list) and isinstance(hardware["gpus"], list)
        network = node["network"]
        assert {i["name"] for i in network["interfaces"]} == interfaces
        lo = next((i for i in network["interfaces"] if "127.0.0.1" in i["addresses"]), None)
        assert lo is not None, network
        assert "primary_ip" in network

        metrics, resources = node["metrics"], node["resources"]  # the latest sample, from memory
        assert metrics["at"] and 0 <= metrics["cpu_percent"] <= 100
        assert metrics["memory_total_bytes"] == psutil.virtual_memory().total
        assert len(metrics["load"]) == 3 and isinstance(metrics["nets"], list)
        assert resources["memory_total_bytes"] == metrics["memory_total_bytes"]
        assert 0 <= resources["memory_percent"] <= 100
        assert resources["gpu_count"] == len(hardware["gpus"]) and resources["instances"] >= 0

        history = fleet.api.get(f"/api/v1/nodes/{node_id}/metrics")
        assert history.status_code == 200, history.text
        assert history.json()["node_id"] == node_id
        samples = history.json()["samples"]
        assert samples and all(s["memory_total_bytes"] == metrics["memory_total_bytes"] for s in samples)
        assert metrics["at"] in [s["at"] for s in samples]  # the node's sample is the history's
        assert [s["at"] for s in samples] == sorted(s["at"] for s in samples)

        change = last_change(fleet, node_id)
        assert (change["from_status"], change["to_status"], change["by"], change["reason"]) == \
            ("offline", "online", "hub", "agent connected")

    listed = fleet.api.get("/api/v1/nodes", params={"online": "true", "selector": "region=eu"})
    assert listed.status_code == 200, listed.text
    assert sorted(n["id"] for n in listed.json()) == ["fleet-a", "fleet-b"]
    assert all(n["metrics"] for n in listed.json())


async def test_watch_nodes_gives_the_fleet_then_a_status_change(fleet: Fleet) -> None:
    start_fleet(fleet)
    ca = grpc.ssl_channel_credentials((fleet.data_dir / "ca.pem").read_bytes())  # as a console dials it
    headers = admin_headers(fleet.data_dir)
    async with aio.secure_channel(fleet.hub.grpc_address, ca) as channel, \
            httpx.AsyncClient(base_url=fleet.hub.url, timeout=WAIT, headers=headers) as api:
        metadata = (("authorization", headers["Authorization"]),)
        watch = pb_grpc.HubServiceStub(channel).WatchNodes(pb.WatchNodesRequest(), metadata=metadata)

        snapshot: dict[str, pb.Node] = {}
        while True:
            update = await asyncio.wait_for(watch.read(), WAIT)
            assert update is not aio.EOF and update.snapshot, update
            snapshot.update((n.id, n) for n in update.nodes)
            if update.snapshot_done:
                break
        assert sorted(snapshot) == NODES
        for node in snapshot.values():
            assert node.online and node.status == "online"
            assert node.hardware["cpu"]["cores"] >= 1 and node.metrics["memory_total_bytes"] > 0
            assert dict(node.labels) == LABELS[node.id]

        r = await api.put("/api/v1/nodes/fleet-b/status", json={"status": "maintenance", "reason": "disk swap"},
                          headers={"X-Gamenode-Actor": "fleet-test"})
        assert r.status_code == 200, r.text

        async def maintenance_delta() -> pb.Node:
            while True:  # metrics keep coming: skip the deltas they cause
                update = await watch.read()
                assert update is not aio.EOF, "the watch ended"
                assert not update.snapshot and not update.deleted, update
                for node in update.nodes:
                    if node.id == "fleet-b" and node.status == "maintenance":
                        return node

        try:
            node = await asyncio.wait_for(maintenance_delta(), WAIT)
        except TimeoutError:
            raise AssertionError(f"no WatchNodes delta with fleet-b in maintenance\n{fleet.logs()}") from None
        assert node.online  # drained, still connected
        watch.cancel()

    change = last_change(fleet, "fleet-b")
    assert (change["from_status"], change["to_status"], change["by"], change["reason"]) == \
        ("online", "maintenance", "admin (local)", "disk swap")  # the token's name, not the header's


# --- 2. ping through a real agent --------------------------------------------------------


def test_ping_goes_through_the_real_agents(fleet: Fleet) -> None:
    start_fleet(fleet)
    for node_id in NODES:
        r = fleet.ping(node_id)
        assert r.status_code == 200, f"{r.text}\n{fleet.logs()}"
        answer = r.json()
        assert answer["node_id"] == node_id and answer["rtt_ms"] > 0

    fleet.add_node("fleet-idle")  # a token, but no agent
    r = fleet.ping("fleet-idle")
    assert r.status_code == 409, r.text
    assert "not connected" in r.json()["message"]


# --- 3. an agent killed -----------------------------------------------------------------


def test_a_killed_agent_takes_its_node_offline_and_only_its_node(fleet: Fleet) -> None:
    start_fleet(fleet)
    victim = next(a for a in fleet.agents if a.node_id == "fleet-b")
    victim.signal(signal.SIGKILL)
    assert victim.wait() == -signal.SIGKILL

    node = fleet.wait_offline("fleet-b")
    assert node["last_online"]
    change = fleet.wait("fleet-b's offline change in its history",
                        lambda: (c := last_change(fleet, "fleet-b"))["to_status"] == "offline" and c)
    assert went_offline_by_hub(change), change
    assert change["from_status"] == "online"

    for node_id in ("fleet-a", "fleet-c"):
        node = fleet.node(node_id)
        assert node["online"] and node["status"] == "online", node
        assert fleet.ping(node_id).status_code == 200  # their streams are alive
        assert [(c["to_status"], c["reason"]) for c in fleet.history(node_id)] == \
            [("offline", "created"), ("online", "agent connected")]
    r = fleet.ping("fleet-b")
    assert r.status_code == 409, r.text


# --- 4. the hub killed and restarted ------------------------------------------------------


def test_agents_come_back_by_themselves_after_the_hub_is_killed_and_restarted(fleet: Fleet) -> None:
    port = free_port()
    before = start_fleet(fleet, grpc_port=port)
    gone = fleet.start_agent("fleet-gone", fleet.add_node("fleet-gone", labels={"region": "ap"}))
    fleet.wait_online(["fleet-gone"])
    first = fleet.hub
    assert first.grpc_address == f"127.0.0.1:{port}"
    pids = {a.node_id: a.pid for a in fleet.agents}

    first.signal(signal.SIGKILL)
    assert first.wait() == -signal.SIGKILL
    gone.signal(signal.SIGKILL)  # dies with the hub: its node is still marked online on disk
    assert gone.wait() == -signal.SIGKILL
    second = fleet.start_hub(grpc_port=port)  # same data dir, same gRPC port; a new REST port
    assert second.grpc_address == first.grpc_address

    for node_id in NODES:  # a ping needs a live stream to *this* hub: the agent is back
        fleet.wait(f"{node_id}'s agent back on the restarted hub",
                   lambda node_id=node_id: fleet.ping(node_id).status_code == 200)
    after = fleet.wait_online(NODES)  # metrics again: the new hub's memory started empty

    listed = fleet.api.get("/api/v1/nodes").json()
    assert sorted(n["id"] for n in listed) == sorted([*NODES, "fleet-gone"])
    for node_id in NODES:
        old, new = before[node_id], after[node_id]
        for key in ("labels", "name", "location", "type", "hardware", "network", "created_at"):
            assert new[key] == old[key], (node_id, key)
    for agent in fleet.agents:  # the same processes reconnected; none was restarted
        if agent is not gone:
            assert agent.running and pids[agent.node_id] == agent.pid, agent.describe()
            assert agent.output().count("connected: session") >= 2, agent.describe()

    node = fleet.wait_offline("fleet-gone")  # its agent did not come back within three heartbeats
    assert node["labels"] == {"region": "ap"}
    change = last_change(fleet, "fleet-gone")
    assert (change["from_status"], change["to_status"], change["by"], change["reason"]) == \
        ("online", "offline", "hub", "agent did not reconnect after the hub restarted")
    assert all(fleet.node(node_id)["online"] for node_id in NODES)


# --- 5. credentials -------------------------------------------------------------------


def test_a_wrong_token_is_refused_and_the_node_never_comes_online(fleet: Fleet) -> None:
    fleet.start_hub()
    fleet.add_node("fleet-a")
    wrong = "0123456789ab.not-the-token-0123456789"

    burst = fleet.start_agent("fleet-a", wrong, once=True, name="agent-once")
    assert burst.wait(WAIT) == 1, burst.describe()
    assert "gamenode agent: error: hub refused the join token for node fleet-a: invalid or expired join token " \
           "for node fleet-a" in burst.output(), burst.describe()
    assert "refused join of node 'fleet-a'" in fleet.hub.output(), fleet.logs()

    daemon = fleet.start_agent("fleet-a", wrong)  # keeps retrying: an operator may fix the token
    fleet.wait("the agent refused twice, and retrying",
               lambda: daemon.output().count("invalid or expired join token for node fleet-a; retrying") >= 2)
    assert daemon.running, daemon.describe()
    node = fleet.node("fleet-a")
    assert not node["online"] and node["status"] == "offline" and not node["hardware"], node
    assert [c["to_status"] for c in fleet.history("fleet-a")] == ["offline"]  # created, nothing since
    assert "invalid or expired join token" in fleet.hub.output()
    assert wrong not in fleet.hub.output()  # the hub never logs a token
    assert daemon.terminate() == 0, daemon.describe()


def test_rotating_a_token_cuts_off_the_agent_that_holds_the_old_one(fleet: Fleet) -> None:
    fleet.start_hub()
    agents = fleet.start_agents(["fleet-a", "fleet-b"])
    fleet.wait_online(["fleet-a", "fleet-b"])

    new_token = fleet.issue_token("fleet-a")  # rotate while its agent is connected
    fleet.wait_offline("fleet-a")
    change = last_change(fleet, "fleet-a")
    assert change["to_status"] == "offline" and change["by"] == "hub", change
    assert "rotated" in change["reason"], change
    old = agents["fleet-a"]
    assert "hub refused node fleet-a's certificate: the credential for node fleet-a was rotated" in old.output(), \
        old.describe()
    fleet.wait("the old agent refused on reconnect",  # its certificate no longer works, its token was used
               lambda: old.output().count("hub refused node fleet-a's certificate") >= 2)
    assert "give the agent a new join token (the one it has was used already)" in old.output(), old.describe()
    assert not fleet.node("fleet-a")["online"]
    assert old.running, old.describe()  # still retrying with its old certificate, in vain
    assert fleet.ping("fleet-b").status_code == 200  # the other node is untouched
    assert fleet.node("fleet-b")["online"]

    assert old.terminate() == 0, old.describe()
    fleet.start_agent("fleet-a", new_token, name="agent-fleet-a-new")
    fleet.wait_online(["fleet-a"])
    assert fleet.ping("fleet-a").status_code == 200


# --- 6. clean stops ---------------------------------------------------------------------


def test_sigterm_stops_an_agent_and_the_hub_with_exit_0(fleet: Fleet) -> None:
    fleet.start_hub()
    agents = fleet.start_agents(["fleet-a", "fleet-b"])
    fleet.wait_online(["fleet-a", "fleet-b"])

    a = agents["fleet-a"]
    assert a.terminate() == 0, a.describe()
    assert "agent stopped" in a.output(), a.describe()
    fleet.wait_offline("fleet-a")
    change = last_change(fleet, "fleet-a")
    assert change["reason"] == "the agent closed its stream" and change["by"] == "hub", change

    hub = fleet.hub
    assert hub.terminate() == 0, fleet.logs()
    b = agents["fleet-b"]
    fleet.wait("agent b told that the hub is shutting down",
               lambda: "UNAVAILABLE: the hub is shutting down" in b.output())
    assert b.running, b.describe()  # an agent outlives its hub: it reconnects to the next one
    record = yaml.safe_load((fleet.data_dir / "nodes" / "fleet-b.yaml").read_text())
    assert record["online"] is True  # a hub that stops leaves its nodes marked online
    assert b.terminate() == 0, b.describe()
