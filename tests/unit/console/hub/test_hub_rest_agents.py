"""REST: the agent's join token (/token), the metrics history (/metrics), /ping, and live maps on nodes."""

from __future__ import annotations

import asyncio
import stat
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import httpx
import pytest

from console.hub.api import agents
from console.hub.app import create_app
from console.service import Services
from proto import gamenode_pb2 as pb

if TYPE_CHECKING:
    from conftest import Hub


@pytest.fixture
async def client(hub: Hub) -> AsyncIterator[httpx.AsyncClient]:
    async with await hub.client() as client:
        yield client


def error_of(r: httpx.Response, status: int, code: str) -> str:
    assert r.status_code == status, r.text
    body: dict[str, Any] = r.json()
    assert body["error"] == code
    message: str = body["message"]
    return message


# --- /token -----------------------------------------------------------------------------


async def test_issue_shows_the_token_once_and_stores_its_hmac(hub: Hub, client: httpx.AsyncClient) -> None:
    hub.services.nodes.create_node({"id": "n1", "name": "n1", "type": "physical"})
    r = await client.post("/api/v1/nodes/n1/token")
    assert r.status_code == 201
    body = r.json()
    assert set(body) == {"node_id", "token", "expires_at"} and body["node_id"] == "n1" and len(body["token"]) >= 40
    token = body["token"]
    expires_at = datetime.fromisoformat(body["expires_at"])
    assert timedelta(minutes=59) < expires_at - datetime.now(UTC) <= timedelta(hours=1)

    path = hub.stores.credentials.root / "n1.yaml"
    text = path.read_text()
    pending = hub.stores.credentials.get("n1").join_token
    assert pending is not None and pending.mac in text and pending.expires_at == expires_at
    assert token not in text and token.split(".")[1] not in text
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert hub.services.credentials.verify("n1", token) is not None
    assert token not in (await client.get("/api/v1/nodes/n1")).text

    rotated = (await client.post("/api/v1/nodes/n1/token")).json()["token"]
    assert rotated != token
    assert hub.services.credentials.verify("n1", token) is None
    assert hub.services.credentials.verify("n1", rotated) is not None


async def test_revoke(hub: Hub, client: httpx.AsyncClient) -> None:
    agent = hub.make_agent("n1")
    r = await client.delete("/api/v1/nodes/n1/token")
    assert r.status_code == 204
    assert hub.services.credentials.verify("n1", agent.token) is None
    assert (await client.delete("/api/v1/nodes/n1/token")).status_code == 204  # nothing left to revoke


async def test_token_routes_want_an_existing_node(client: httpx.AsyncClient) -> None:
    error_of(await client.post("/api/v1/nodes/n9/token"), 404, "not_found")
    error_of(await client.delete("/api/v1/nodes/n9/token"), 404, "not_found")


async def test_deleting_the_node_deletes_its_credential(hub: Hub, client: httpx.AsyncClient) -> None:
    hub.make_agent("n1")
    assert (await client.delete("/api/v1/nodes/n1")).status_code == 204
    assert "n1" not in hub.stores.credentials
    assert not (hub.stores.credentials.root / "n1.yaml").exists()


# --- /metrics and the live maps ----------------------------------------------------------------


async def test_metrics_history_and_live_maps(hub: Hub, client: httpx.AsyncClient) -> None:
    agent = hub.make_agent("n1")
    await agent.connect()
    samples = []
    for i, t in enumerate((1_700_000_000, 1_700_000_010, 1_700_000_020)):
        s = pb.MetricsSample(cpu_percent=float(i), memory_total_bytes=8, memory_used_bytes=2, memory_percent=25.0)
        s.at.FromSeconds(t)
        s.disks.add(mount="/", percent=60.0)
        samples.append(s)
    await agent.send(metrics=pb.MetricsBatch(samples=samples))
    await agent.sync()

    r = await client.get("/api/v1/nodes/n1/metrics")
    assert r.status_code == 200
    body = r.json()
    assert body["node_id"] == "n1"
    assert [s["cpu_percent"] for s in body["samples"]] == [0.0, 1.0, 2.0]
    assert body["samples"][0]["at"] == "2023-11-14T22:13:20Z"
    assert body["samples"][0]["disks"][0]["mount"] == "/"

    r = await client.get("/api/v1/nodes/n1/metrics",
                         params={"since": "2023-11-14T22:13:30Z", "until": "2023-11-14T22:13:30"})
    assert [s["cpu_percent"] for s in r.json()["samples"]] == [1.0]

    node = (await client.get("/api/v1/nodes/n1")).json()
    assert node["metrics"]["cpu_percent"] == 2.0
    assert node["resources"] == {"cpu_percent": 2.0, "memory_used_bytes": 2, "memory_total_bytes": 8,
                                 "memory_percent": 25.0, "disk_percent": 60.0, "gpu_count": 0, "instances": 0}
    listed = (await client.get("/api/v1/nodes")).json()
    assert listed[0]["metrics"]["cpu_percent"] == 2.0
    assert hub.node("n1").metrics == {} and hub.node("n1").resources == {}  # never written
    assert "cpu_percent" not in (hub.stores.nodes.root / "n1.yaml").read_text()


async def test_metrics_of_a_quiet_or_unknown_node(hub: Hub, client: httpx.AsyncClient) -> None:
    hub.services.nodes.create_node({"id": "n1", "name": "n1", "type": "physical"})
    assert (await client.get("/api/v1/nodes/n1/metrics")).json() == {"node_id": "n1", "samples": []}
    error_of(await client.get("/api/v1/nodes/n9/metrics"), 404, "not_found")
    error_of(await client.get("/api/v1/nodes/n1/metrics", params={"since": "yesterday"}), 422, "invalid_input")


# --- /ping --------------------------------------------------------------------------------


async def test_ping_goes_to_the_agent_and_back(hub: Hub, client: httpx.AsyncClient) -> None:
    agent = hub.make_agent("n1")
    await agent.connect()
    request = asyncio.create_task(client.post("/api/v1/nodes/n1/ping"))
    command = await agent.read_until("command")
    assert command.command.HasField("ping") and command.command.ping.HasField("sent_at")
    await agent.event(command_ack=pb.CommandAck(command_id=command.command.command_id, ok=True))
    r = await request
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["node_id"] == "n1" and body["rtt_ms"] >= 0


async def test_ping_answers_409_when_not_connected_and_404_when_unknown(
    hub: Hub, client: httpx.AsyncClient
) -> None:
    hub.services.nodes.create_node({"id": "n1", "name": "n1", "type": "physical"})
    assert "not connected" in error_of(await client.post("/api/v1/nodes/n1/ping"), 409, "conflict")
    error_of(await client.post("/api/v1/nodes/n9/ping"), 404, "not_found")


async def test_ping_times_out_with_504_and_forgets_the_command(
    hub: Hub, client: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(agents, "PING_TIMEOUT", 0.05)
    agent = hub.make_agent("n1")
    await agent.connect()
    r = await client.post("/api/v1/nodes/n1/ping")  # the agent never acks
    assert "did not answer" in error_of(r, 504, "timeout")
    assert hub.registry.pending_commands("n1") == []


async def test_a_refused_ping_is_503(hub: Hub, client: httpx.AsyncClient) -> None:
    agent = hub.make_agent("n1")
    await agent.connect()
    request = asyncio.create_task(client.post("/api/v1/nodes/n1/ping"))
    command = await agent.read_until("command")
    await agent.event(command_ack=pb.CommandAck(command_id=command.command.command_id, ok=False, error="busy"))
    assert "busy" in error_of(await request, 503, "unavailable")


async def test_an_app_without_agent_streams_answers_503(hub: Hub) -> None:
    hub.services.nodes.create_node({"id": "n1", "name": "n1", "type": "physical"})
    app = create_app(Services.over(hub.stores))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as client:
        error_of(await client.post("/api/v1/nodes/n1/ping"), 503, "unavailable")
        assert (await client.get("/api/v1/nodes/n1/metrics")).json()["samples"] == []
