"""HubService over a real grpc.aio server: node CRUD and status, metrics, and errors as status codes."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import grpc
import pytest
from grpc import aio

from console.errors import (
    AlreadyExists,
    Conflict,
    CorruptData,
    GamenodeError,
    InvalidInput,
    NotFound,
    TimedOut,
    Unauthorized,
    Unavailable,
)
from console.hub.app import VERSION
from console.hub.convert import node_from_pb
from console.hub.errors import GRPC_STATUS, grpc_status
from proto import gamenode_pb2 as pb

if TYPE_CHECKING:
    from conftest import Hub

    from proto import gamenode_pb2_grpc as pb_grpc

Stub = Any


# --- the mapping -------------------------------------------------------------------------


def _all_subclasses(cls: type[GamenodeError]) -> list[type[GamenodeError]]:
    return [cls, *(sub for direct in cls.__subclasses__() for sub in _all_subclasses(direct))]


def test_every_error_code_has_a_grpc_status() -> None:
    for cls in _all_subclasses(GamenodeError):
        assert cls.code in GRPC_STATUS, cls


@pytest.mark.parametrize(
    ("error", "status"),
    [
        (NotFound("node", "n9"), grpc.StatusCode.NOT_FOUND),
        (AlreadyExists("node 'n1' already exists"), grpc.StatusCode.ALREADY_EXISTS),
        (Conflict("cannot go from offline to ready"), grpc.StatusCode.FAILED_PRECONDITION),
        (InvalidInput("bad"), grpc.StatusCode.INVALID_ARGUMENT),
        (Unauthorized("who are you"), grpc.StatusCode.UNAUTHENTICATED),
        (Unavailable("elsewhere"), grpc.StatusCode.UNAVAILABLE),
        (TimedOut("too slow"), grpc.StatusCode.DEADLINE_EXCEEDED),
        (CorruptData("/x.yaml", "broken"), grpc.StatusCode.DATA_LOSS),
        (GamenodeError("?"), grpc.StatusCode.INTERNAL),
    ],
)
def test_errors_map_to_grpc_statuses(error: GamenodeError, status: grpc.StatusCode) -> None:
    assert grpc_status(error) == status


async def code_of(call: Any) -> tuple[grpc.StatusCode, str]:
    with pytest.raises(aio.AioRpcError) as exc:
        await call
    return exc.value.code(), exc.value.details() or ""


# --- the RPCs ---------------------------------------------------------------------------


async def test_version(hub_stub: pb_grpc.HubServiceStub) -> None:
    info = await hub_stub.GetVersion(pb.GetVersionRequest())
    assert (info.version, info.api) == (VERSION, "gamenode.v1")


async def test_node_crud_and_status(hub: Hub, hub_stub: Stub) -> None:
    body = {"id": "n1", "name": "Node 1", "type": "virtual", "labels": {"region": "eu"},
            "hardware": {"cpu": {"cores": 16}, "memory_mb": 65536}}
    created = await hub_stub.CreateNode(pb.NodeJson(json=json.dumps(body)), metadata=hub.bearer("ops"))
    assert created.id == "n1" and created.status == "offline" and created.labels["region"] == "eu"
    node = node_from_pb(created)
    assert node.hardware == {"cpu": {"cores": 16}, "memory_mb": 65536}
    assert node == hub.node("n1")  # the wire loses nothing

    got = await hub_stub.GetNode(pb.GetNodeRequest(id="n1"))
    assert got == created

    updated = await hub_stub.UpdateNode(pb.UpdateNodeRequest(id="n1", json=json.dumps({"location": "Berlin"})))
    assert updated.location == "Berlin" and updated.name == "Node 1"

    status = await hub_stub.UpdateNodeStatus(pb.UpdateNodeStatusRequest(id="n1", status="maintenance", reason="x"))
    assert status.status == "maintenance"
    history = hub.services.nodes.status_history("n1")
    assert [(c.to_status, c.by) for c in history] == [("offline", "ops"), ("maintenance", "admin (local)")]

    hub.services.nodes.create_node({"id": "n2", "name": "Node 2", "type": "physical"})
    listed = await hub_stub.ListNodes(pb.ListNodesRequest(sort="-id", limit=1))
    assert listed.total == 2 and [n.id for n in listed.nodes] == ["n2"]
    filtered = await hub_stub.ListNodes(pb.ListNodesRequest(selector="region=eu", status="maintenance"))
    assert [n.id for n in filtered.nodes] == ["n1"]

    await hub_stub.DeleteNode(pb.GetNodeRequest(id="n1"))
    assert "n1" not in hub.stores.nodes


async def test_errors_come_back_as_status_codes(hub: Hub, hub_stub: Stub) -> None:
    hub.services.nodes.create_node({"id": "n1", "name": "n1", "type": "physical"})
    cases = [
        (hub_stub.GetNode(pb.GetNodeRequest(id="n9")), grpc.StatusCode.NOT_FOUND, "node 'n9' not found"),
        (hub_stub.CreateNode(pb.NodeJson(json='{"id": "n1", "name": "x", "type": "physical"}')),
         grpc.StatusCode.ALREADY_EXISTS, "already exists"),
        (hub_stub.CreateNode(pb.NodeJson(json="{not json")), grpc.StatusCode.INVALID_ARGUMENT, "not valid JSON"),
        (hub_stub.CreateNode(pb.NodeJson(json="[1]")), grpc.StatusCode.INVALID_ARGUMENT, "JSON object"),
        (hub_stub.CreateNode(pb.NodeJson(json='{"id": "n2", "name": "x", "type": "boat"}')),
         grpc.StatusCode.INVALID_ARGUMENT, "type"),
        (hub_stub.UpdateNodeStatus(pb.UpdateNodeStatusRequest(id="n1", status="ready")),
         grpc.StatusCode.FAILED_PRECONDITION, "cannot go from offline to ready"),
        (hub_stub.UpdateNodeStatus(pb.UpdateNodeStatusRequest(id="n1", status="maintenance")),
         grpc.StatusCode.INVALID_ARGUMENT, "reason"),
        (hub_stub.ListNodes(pb.ListNodesRequest(status="sleeping")), grpc.StatusCode.INVALID_ARGUMENT, "status"),
        (hub_stub.ListNodes(pb.ListNodesRequest(sort="colour")), grpc.StatusCode.INVALID_ARGUMENT, "sort"),
        (hub_stub.DeleteNode(pb.GetNodeRequest(id="n9")), grpc.StatusCode.NOT_FOUND, "n9"),
        (hub_stub.GetMetrics(pb.GetMetricsRequest(node_id="n9")), grpc.StatusCode.NOT_FOUND, "n9"),
    ]
    for call, status, words in cases:
        code, details = await code_of(call)
        assert (code, words in details) == (status, True), (code, details)


async def test_metrics_history_and_live_maps(hub: Hub, hub_stub: Stub) -> None:
    agent = hub.make_agent("n1")
    await agent.connect()
    samples = []
    for i, t in enumerate((100, 200, 300)):
        s = pb.MetricsSample(cpu_percent=float(i), memory_percent=10.0)
        s.at.FromSeconds(t)
        samples.append(s)
    await agent.send(metrics=pb.MetricsBatch(samples=samples))
    await agent.sync()

    everything = await hub_stub.GetMetrics(pb.GetMetricsRequest(node_id="n1"))
    assert everything.node_id == "n1" and [s.cpu_percent for s in everything.samples] == [0.0, 1.0, 2.0]
    window = pb.GetMetricsRequest(node_id="n1")
    window.since.FromSeconds(150)
    window.until.FromSeconds(300)
    assert [s.at.seconds for s in (await hub_stub.GetMetrics(window)).samples] == [200, 300]

    node = await hub_stub.GetNode(pb.GetNodeRequest(id="n1"))
    assert node.metrics["cpu_percent"] == 2.0 and node.resources["memory_percent"] == 10.0
    assert hub.node("n1").metrics == {}  # in answers only, never in the record
    listed = await hub_stub.ListNodes(pb.ListNodesRequest())
    assert listed.nodes[0].metrics["cpu_percent"] == 2.0
