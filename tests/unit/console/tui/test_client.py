"""HubClient against a real in-process hub: on a unix socket, answers as REST-named dicts, errors as words."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from grpc import aio

from console.hub.runtime import HubRuntime
from console.service import Services
from console.settings import HubSettings
from console.store import Stores
from console.tui.client import HubClient, HubUnavailableError, NodeBatch, NotAvailable
from proto import gamenode_pb2 as pb
from proto import gamenode_pb2_grpc as pb_grpc

WAIT = 10.0
"""Seconds a test waits for the hub (a bound, never a measurement)."""


@pytest.fixture
def services(tmp_path: Path) -> Iterator[Services]:
    stores = Stores.open(tmp_path / "data")
    services = Services.over(stores)
    services.nodes.create_node({"id": "n1", "name": "n1", "type": "physical", "labels": {"region": "eu"},
                                "hardware": {"cpu": {"cores": 4}}})
    yield services
    stores.close()


@pytest.fixture
async def runtime(tmp_path: Path, services: Services) -> AsyncIterator[HubRuntime]:
    settings = HubSettings(data_dir=tmp_path / "data", http_listen="127.0.0.1:0", grpc_listen="127.0.0.1:0")
    runtime = HubRuntime(services, settings)
    await runtime.start(f"127.0.0.1:0,unix:{tmp_path / 'hub.sock'}", monitor_period=3600)
    yield runtime
    await runtime.stop(grace=0)


@pytest.fixture
async def client(runtime: HubRuntime) -> AsyncIterator[HubClient]:
    client = HubClient(runtime.grpc_addresses[-1])
    await client.connect()
    yield client
    await client.close()


async def test_it_speaks_over_the_unix_socket(runtime: HubRuntime, client: HubClient, tmp_path: Path) -> None:
    assert client.target == f"unix:{tmp_path / 'hub.sock'}"
    assert (tmp_path / "hub.sock").stat().st_mode & 0o777 == 0o600
    assert await client.version()


async def test_nodes_are_dicts_with_rest_names_and_datetimes(client: HubClient) -> None:
    node = await client.get_node("n1")
    assert node["id"] == "n1"
    assert node["labels"] == {"region": "eu"}
    assert node["hardware"] == {"cpu": {"cores": 4}}  # whole numbers stay int
    assert isinstance(node["created_at"], datetime) and node["created_at"].tzinfo is not None
    assert node["last_online"] is None
    assert node["status"] == "offline" and node["online"] is False


async def test_watch_nodes_snapshot_then_changes(services: Services, client: HubClient) -> None:
    stream = client.watch_nodes("region=eu")
    first = await asyncio.wait_for(anext(stream), WAIT)
    assert first == NodeBatch(snapshot=True, nodes=first.nodes, deleted=[], snapshot_done=True)
    assert [n["id"] for n in first.nodes] == ["n1"]
    await asyncio.to_thread(services.nodes.create_node,
                            {"id": "n2", "name": "n2", "type": "virtual", "labels": {"region": "eu"}})
    change = await asyncio.wait_for(anext(stream), WAIT)
    assert not change.snapshot and [n["id"] for n in change.nodes] == ["n2"]
    await asyncio.to_thread(services.nodes.delete_node, "n2")
    gone = await asyncio.wait_for(anext(stream), WAIT)
    assert gone.deleted == ["n2"]
    await stream.aclose()  # type: ignore[attr-defined]


async def test_node_actions(client: HubClient) -> None:
    node = await client.update_labels("n1", {"rack": "r1"}, ["region"])
    assert node["labels"] == {"rack": "r1"}
    node = await client.set_status("n1", "maintenance", "disk swap")
    assert node["status"] == "maintenance"
    history = await client.node_history("n1")
    assert history[-1]["to_status"] == "maintenance"
    assert history[-1]["by"] == "console" and history[-1]["reason"] == "disk swap"
    assert isinstance(history[-1]["at"], datetime)
    token = await client.issue_token("n1")
    assert token and token != await client.issue_token("n1")
    await client.delete_node("n1")
    assert await client.instances() == []


async def test_catalog_answers(client: HubClient) -> None:
    pipelines = {p["name"]: p for p in await client.pipelines()}
    start = pipelines["platform-start"]
    assert start["instance"] == "create"
    assert start["params"]["image"]["required"] is True
    assert "choices" in start["params"]["image"]
    assert start["steps"]
    assert await client.gamecards() == []


async def test_metrics_of_a_node_without_samples(client: HubClient) -> None:
    assert await client.metrics("n1", since=datetime(2020, 1, 1, tzinfo=UTC)) == []


async def test_logs_query_and_tail(runtime: HubRuntime, client: HubClient) -> None:
    tail = client.tail_logs(node_id="n1")
    assert await asyncio.wait_for(anext(tail), WAIT) == ([], 0)  # the tail is live
    runtime.logs.append("n1", pb.LogChunk(source="agent", lines=[pb.LogLine(level="info", text="hello")]))
    entries, dropped = await asyncio.wait_for(anext(tail), WAIT)
    assert [(e["node_id"], e["source"], e["text"]) for e in entries] == [("n1", "agent", "hello")]
    assert dropped == 0
    await tail.aclose()  # type: ignore[attr-defined]
    found = await client.query_logs(node_id="n1", q="hell")
    assert [e["text"] for e in found] == ["hello"]
    assert isinstance(found[0]["at"], datetime)


async def test_errors_carry_the_hubs_words(client: HubClient) -> None:
    with pytest.raises(HubUnavailableError) as exc:
        await client.get_node("n9")
    assert exc.value.code == "not_found"
    assert "n9" in str(exc.value)
    with pytest.raises(HubUnavailableError) as exc:
        await client.set_status("n1", "maintenance", "")
    assert exc.value.code in ("invalid_argument", "failed_precondition")
    with pytest.raises(HubUnavailableError) as exc:
        await client.launch("no-such-game")
    assert exc.value.code == "not_found"


async def test_a_stream_that_fails_raises_the_same(client: HubClient) -> None:
    with pytest.raises(HubUnavailableError) as exc:
        await anext(client.watch_run("r-missing"))
    assert exc.value.code == "not_found"


async def test_an_rpc_the_hub_lacks_is_not_available(tmp_path: Path) -> None:
    server = aio.server()
    pb_grpc.add_HubServiceServicer_to_server(pb_grpc.HubServiceServicer(), server)  # type: ignore[no-untyped-call]
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    client = HubClient(f"127.0.0.1:{port}", insecure=True)  # a bare plaintext server
    try:
        await client.connect()
        with pytest.raises(NotAvailable, match="not available on this hub"):
            await client.gamecards()
        with pytest.raises(NotAvailable):
            await anext(client.watch_rollout("r1"))
    finally:
        await client.close()
        await server.stop(0)


async def test_no_hub_is_an_error_not_a_hang(tmp_path: Path) -> None:
    client = HubClient(f"unix:{tmp_path / 'nobody.sock'}")
    with pytest.raises(HubUnavailableError, match="cannot reach the hub"):
        await client.connect(timeout=0.5)
    with pytest.raises(HubUnavailableError, match="cannot reach the hub"):
        await client.version()
    await client.close()
    with pytest.raises(HubUnavailableError, match="not connected"):
        await client.version()


async def test_params_that_are_not_json_are_refused_here(client: HubClient) -> None:
    with pytest.raises(HubUnavailableError) as exc:
        await client.start_run("n1", "platform-start", {"when": object()})
    assert exc.value.code == "invalid_argument"
