"""The console's HubService extras over a real grpc.aio server: the REST answers' JSON, the same errors."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC
from typing import TYPE_CHECKING, Any

import grpc
import pytest
from grpc import aio

from console.models import InstanceState
from proto import gamenode_pb2 as pb

if TYPE_CHECKING:
    from conftest import FakeAgent, Hub

Stub = Any
HARDWARE = {"cpu": {"cores": 8}, "memory_mb": 16384}


async def code_of(call: Any) -> tuple[grpc.StatusCode, str]:
    with pytest.raises(aio.AioRpcError) as exc:
        await call
    return exc.value.code(), exc.value.details() or ""


async def rest(hub: Hub, method: str, path: str, **kwargs: Any) -> Any:
    async with await hub.client() as client:
        answer = await client.request(method, path, **kwargs)
    assert answer.status_code < 300, answer.text
    return answer.json()


def game(hub: Hub) -> None:
    hub.services.platforms.create_platform({"id": "docker", "name": "docker"})
    hub.services.gamecards.create_card({"id": "quake", "name": "quake", "platform": "docker", "versions": [
        {"version": "1.0.0", "image": "reg/quake:1", "resources": {"cpu": 2, "memory_mb": 1024}},
    ]})


async def online(hub: Hub, node_id: str = "n1") -> FakeAgent:
    agent = hub.make_agent(node_id, hardware=HARDWARE, labels={"region": "eu"})
    await agent.connect()
    return agent


# --- nodes ----------------------------------------------------------------------------------


async def test_history_labels_and_token(hub: Hub, hub_stub: Stub) -> None:
    hub.services.nodes.create_node({"id": "n1", "name": "n1", "type": "physical", "labels": {"a": "1"}})
    await hub_stub.UpdateNodeStatus(pb.UpdateNodeStatusRequest(id="n1", status="maintenance", reason="disk"),
                                    metadata=hub.bearer("ann"))
    history = await hub_stub.GetNodeHistory(pb.GetNodeRequest(id="n1"))
    assert json.loads(history.json) == await rest(hub, "GET", "/api/v1/nodes/n1/history")
    assert json.loads(history.json)[-1]["by"] == "ann"

    node = await hub_stub.UpdateNodeLabels(pb.UpdateNodeLabelsRequest(id="n1", set={"b": "2"}, remove=["a"]))
    assert dict(node.labels) == {"b": "2"}

    token = await hub_stub.IssueAgentToken(pb.GetNodeRequest(id="n1"))
    assert token.node_id == "n1"
    assert hub.services.credentials.verify("n1", token.token) is not None
    pending = hub.stores.credentials.get("n1").join_token
    assert pending is not None and token.expires_at.ToDatetime(tzinfo=UTC) == pending.expires_at


@pytest.mark.parametrize("rpc", ["GetNodeHistory", "IssueAgentToken", "GetHostKey"])
async def test_unknown_nodes_are_not_found(hub_stub: Stub, rpc: str) -> None:
    code, details = await code_of(getattr(hub_stub, rpc)(pb.GetNodeRequest(id="n9")))
    assert code == grpc.StatusCode.NOT_FOUND
    assert "n9" in details


async def test_labels_of_an_unknown_node(hub_stub: Stub) -> None:
    code, _ = await code_of(hub_stub.UpdateNodeLabels(pb.UpdateNodeLabelsRequest(id="n9", set={"a": "1"})))
    assert code == grpc.StatusCode.NOT_FOUND


# --- lists ----------------------------------------------------------------------------------


async def test_lists_answer_what_rest_answers(hub: Hub, hub_stub: Stub) -> None:
    game(hub)
    hub.services.nodes.create_node({"id": "n1", "name": "n1", "type": "physical", "hardware": HARDWARE})
    hub.services.instances.create_instance({"id": "i1", "node_id": "n1", "game": "quake"})
    pipelines = await hub_stub.ListPipelines(pb.ListPipelinesRequest())
    assert json.loads(pipelines.json) == await rest(hub, "GET", "/api/v1/pipelines")
    instances = await hub_stub.ListInstances(pb.ListInstancesRequest())
    assert json.loads(instances.json) == await rest(hub, "GET", "/api/v1/instances")
    on_n1 = await hub_stub.ListInstances(pb.ListInstancesRequest(node_id="n1"))
    assert [i["id"] for i in json.loads(on_n1.json)] == ["i1"]
    cards = await hub_stub.ListGameCards(pb.ListGameCardsRequest())
    assert json.loads(cards.json) == await rest(hub, "GET", "/api/v1/gamecards")


async def test_a_bad_instance_filter_is_invalid(hub_stub: Stub) -> None:
    code, details = await code_of(hub_stub.ListInstances(pb.ListInstancesRequest(state="sleeping")))
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert "state" in details


# --- launch, stop, actions ---------------------------------------------------------------------


async def test_launch_places_and_starts_the_game(hub: Hub, hub_stub: Stub) -> None:
    game(hub)
    agent = await online(hub)
    request = pb.LaunchInstanceRequest(game="quake", selector="region=eu")
    request.params.update({"port": 7777})
    launched = json.loads((await hub_stub.LaunchInstance(request, metadata=hub.bearer("ann"))).json)
    instance = launched["instance"]
    assert (instance["node_id"], instance["game"], instance["state"]) == ("n1", "quake", "pending")
    run = hub.services.runs.get_run(launched["run_id"])
    assert run.created_by == "ann" and run.params["port"] == 7777
    command = await agent.read_until("command")
    assert command.command.run_pipeline.run_id == launched["run_id"]


async def test_launch_says_why_nothing_fits(hub: Hub, hub_stub: Stub) -> None:
    game(hub)
    await online(hub)
    code, details = await code_of(hub_stub.LaunchInstance(pb.LaunchInstanceRequest(game="quake",
                                                                                   selector="region=us")))
    assert code == grpc.StatusCode.FAILED_PRECONDITION
    assert "n1" in details


async def test_launch_errors(hub: Hub, hub_stub: Stub) -> None:
    game(hub)
    code, _ = await code_of(hub_stub.LaunchInstance(pb.LaunchInstanceRequest(game="doom")))
    assert code == grpc.StatusCode.NOT_FOUND
    code, details = await code_of(hub_stub.LaunchInstance(pb.LaunchInstanceRequest(game="quake", policy="random")))
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert "policy" in details


async def test_container_action_goes_through_the_agent(hub: Hub, hub_stub: Stub) -> None:
    game(hub)
    agent = await online(hub)
    hub.services.instances.create_instance({"id": "i1", "node_id": "n1", "game": "quake"})
    for state in (InstanceState.PREPARING, InstanceState.STARTING, InstanceState.RUNNING):
        hub.services.instances.transition("i1", state, container_id="c1")
    call = asyncio.ensure_future(hub_stub.InstanceAction(pb.InstanceActionRequest(instance_id="i1", action="restart")))
    command = await agent.read_until("command")
    assert command.command.container_action.action == pb.ContainerAction.ACTION_RESTART
    await agent.event(command_ack=pb.CommandAck(command_id=command.command.command_id, ok=True))
    answer = json.loads((await call).json)
    assert (answer["id"], answer["state"]) == ("i1", "running")

    code, details = await code_of(hub_stub.InstanceAction(pb.InstanceActionRequest(instance_id="i1", action="kick")))
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert "action" in details


async def test_stop_runs_the_stop_pipeline_or_needs_force(hub: Hub, hub_stub: Stub) -> None:
    game(hub)
    agent = await online(hub)
    hub.services.instances.create_instance({"id": "i1", "node_id": "n1", "game": "quake"})
    for state in (InstanceState.PREPARING, InstanceState.STARTING, InstanceState.RUNNING):
        hub.services.instances.transition("i1", state, container_id="c1")
    stopped = json.loads((await hub_stub.StopInstance(pb.StopInstanceRequest(instance_id="i1"))).json)
    assert stopped["run_id"] and stopped["instance"]["state"] == "stopping" and stopped["deleted"] is False

    hub.services.instances.create_instance({"id": "i2", "node_id": "n1", "game": "quake"})
    agent.call.cancel()
    await asyncio.sleep(0.1)
    await hub.settle()
    code, details = await code_of(hub_stub.StopInstance(pb.StopInstanceRequest(instance_id="i2")))
    assert code == grpc.StatusCode.FAILED_PRECONDITION
    assert "force" in details
    forced = json.loads((await hub_stub.StopInstance(pb.StopInstanceRequest(instance_id="i2", force=True))).json)
    assert forced["instance"]["state"] == "stopped" and forced["run_id"] is None


# --- ssh host keys ----------------------------------------------------------------------------


async def test_host_key_of_a_node_without_ssh_is_refused_in_words(hub: Hub, hub_stub: Stub) -> None:
    hub.services.nodes.create_node({"id": "n1", "name": "n1", "type": "physical"})
    code, details = await code_of(hub_stub.GetHostKey(pb.GetNodeRequest(id="n1")))
    assert code not in (grpc.StatusCode.UNKNOWN, grpc.StatusCode.INTERNAL)
    assert "ssh" in details
    code, _ = await code_of(hub_stub.TrustHostKey(pb.TrustHostKeyRequest(node_id="n1", fingerprint="SHA256:x")))
    assert code not in (grpc.StatusCode.UNKNOWN, grpc.StatusCode.INTERNAL)
