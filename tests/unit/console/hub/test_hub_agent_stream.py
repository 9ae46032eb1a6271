"""AgentService.Connect against a fake agent: Hello, Welcome, auth, events and acks, online/offline."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import grpc
import pytest
from google.protobuf import struct_pb2

from console.models import NodeStatus
from proto import gamenode_pb2 as pb

if TYPE_CHECKING:
    from conftest import Hub

# --- hello and welcome -------------------------------------------------------------


async def test_hello_is_welcomed_and_marks_the_node_online(hub: Hub) -> None:
    agent = hub.make_agent("n1")
    welcome = await agent.connect(first_unacked_seq=7)
    assert len(welcome.session_id) == 32
    assert not welcome.resumed
    assert (welcome.heartbeat_interval_ms, welcome.metrics_interval_ms) == (5000, 10000)
    assert welcome.resume_from_seq == 7
    assert hub.registry.connected("n1")

    await hub.settle()
    node = hub.node("n1")
    assert node.online and node.last_online is not None
    assert node.status == NodeStatus.ONLINE
    last = hub.services.nodes.status_history("n1")[-1]
    assert (last.from_status, last.to_status, last.by, last.reason) == ("offline", "online", "hub", "agent connected")


async def test_a_wrong_join_token_is_refused_and_logged_without_the_token(
    hub: Hub, caplog: pytest.LogCaptureFixture
) -> None:
    real = hub.make_agent("n1")  # issues the real join token
    intruder = hub.make_agent("n1", token=real.token.split(".")[0] + ".not-the-token-s3cr3t")
    caplog.set_level(logging.WARNING)
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await intruder.join()
    assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert refused.value.details() == "invalid or expired join token for node n1"
    warning = [r for r in caplog.records if "refused join" in r.getMessage()]
    assert warning and "'n1'" in warning[0].getMessage() and "127.0.0.1" in warning[0].getMessage()
    assert "s3cr3t" not in caplog.text and real.token not in caplog.text
    await real.connect()  # the real token still works
    assert hub.registry.connected("n1")


@pytest.mark.parametrize("case", ["unknown node", "no token issued", "empty token", "not ID.SECRET"])
async def test_other_bad_joins_are_unauthenticated(hub: Hub, case: str) -> None:
    if case == "unknown node":
        agent = hub.make_agent("ghost", token="x.y", create=False)
    elif case == "no token issued":
        agent = hub.make_agent("n1", token="x.y")
    elif case == "empty token":
        hub.make_agent("n1")
        agent = hub.make_agent("n1", token="")
    else:
        token = hub.make_agent("n1").token
        agent = hub.make_agent("n1", token=token.replace(".", ""))
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await agent.join()
    assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert refused.value.details() == f"invalid or expired join token for node {agent.node_id}"


async def test_the_first_message_must_be_hello(hub: Hub) -> None:
    agent = hub.make_agent("n1")
    await agent.open()
    await agent.heartbeat()
    code, details = await agent.ended()
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert "hello" in details


async def test_a_second_hello_on_one_stream_is_a_protocol_error(hub: Hub) -> None:
    agent = hub.make_agent("n1")
    await agent.connect()
    await agent.send(hello=agent.hello())
    code, details = await agent.ended()
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert "hello" in details


# --- reliable events ---------------------------------------------------------------


async def test_events_are_acked_cumulatively_and_duplicates_dropped(hub: Hub) -> None:
    agent = hub.make_agent("n1")
    await agent.connect()
    event = pb.PipelineEvent(run_id="r1", step="pull", state=pb.STEP_STATE_RUNNING, progress=40)
    await agent.send(1, pipeline_event=event)
    await agent.send(2, instance_report=pb.InstanceReport(instances=[pb.InstanceStatus(instance_id="i1")]))
    await agent.send(2, instance_report=pb.InstanceReport())  # a duplicate (resent after a lost ack)
    await agent.send(1, pipeline_event=event)
    agent.seq = 2
    await agent.sync()
    assert agent.acked == 3
    live = hub.runtime.live.find("n1")
    assert live is not None
    assert [e.run_id for e in live.pipeline_events] == ["r1"]
    assert len(live.reports) == 1 and live.reports[0].instances[0].instance_id == "i1"
    assert [c.source for c in live.log_chunks] == ["agent"]  # sync's own event
    assert hub.registry.last_event_seq("n1") == 3


async def test_a_duplicate_is_acked_again(hub: Hub) -> None:
    agent = hub.make_agent("n1")
    await agent.connect()
    await agent.sync()
    await agent.send(1, log_chunk=pb.LogChunk(source="agent"))
    ack = await agent.read_until("ack")
    assert ack.ack.up_to_seq == 1


async def test_resume_keeps_the_session_and_the_event_seq(hub: Hub) -> None:
    agent = hub.make_agent("n1")
    first = await agent.connect()
    for _ in range(3):
        await agent.event(log_chunk=pb.LogChunk(source="agent"))
    await agent.sync()  # seq 4
    await agent.close()
    await agent.ended()

    again = await agent.connect(previous_session_id=first.session_id, first_unacked_seq=3)
    assert again.resumed and again.session_id == first.session_id
    assert again.resume_from_seq == 5  # the hub handled 1-4, whatever the agent thinks is unacked

    await agent.close()
    await agent.ended()
    fresh = await agent.connect(previous_session_id="not-a-session-of-ours")
    assert not fresh.resumed and fresh.session_id != first.session_id


async def test_a_hub_that_never_saw_the_node_resumes_from_the_agents_outbox(hub: Hub) -> None:
    agent = hub.make_agent("n1")
    welcome = await agent.connect(previous_session_id="from-an-earlier-hub", first_unacked_seq=41)
    assert not welcome.resumed
    assert welcome.resume_from_seq == 41
    await agent.send(40, log_chunk=pb.LogChunk(source="agent"))  # acked long ago: a duplicate
    await agent.send(41, log_chunk=pb.LogChunk(source="agent"))
    agent.seq = 41
    await agent.sync()
    live = hub.runtime.live.find("n1")
    assert live is not None and len(live.log_chunks) == 2  # 41 and sync's 42


# --- volatile messages and inventory ---------------------------------------------------


async def test_heartbeats_and_metrics_stay_in_memory(hub: Hub) -> None:
    agent = hub.make_agent("n1")
    await agent.connect()
    await hub.settle()
    stored = hub.node("n1")
    await agent.heartbeat(instances=2)
    sample = pb.MetricsSample(cpu_percent=37.5, memory_total_bytes=100, memory_used_bytes=25, memory_percent=25.0)
    sample.at.FromSeconds(1_700_000_000)
    await agent.send(metrics=pb.MetricsBatch(samples=[sample]))
    await agent.sync()
    await hub.settle()
    assert hub.node("n1") is stored  # nothing was written
    latest = hub.runtime.live.latest("n1")
    assert latest is not None and latest.cpu_percent == 37.5
    assert [s.cpu_percent for s in hub.runtime.live.history("n1")] == [37.5]


async def test_heartbeats_keep_a_session_alive_and_silence_closes_it(hub: Hub) -> None:
    agent = hub.make_agent("n1")
    await agent.connect()
    await hub.settle()
    hub.clock.advance(14)
    await agent.heartbeat()
    await agent.sync()
    hub.clock.advance(14)
    assert hub.registry.check_timeouts() == []  # 14 s since the last heartbeat: within 3 x 5 s

    hub.clock.advance(2)
    closed = hub.registry.check_timeouts()
    assert [s.node_id for s in closed] == ["n1"]
    code, details = await agent.ended()
    assert code == grpc.StatusCode.UNAVAILABLE
    assert details == "no heartbeat for 16 s"
    await hub.settle()
    node = hub.node("n1")
    assert not node.online and node.status == NodeStatus.OFFLINE
    last = hub.services.nodes.status_history("n1")[-1]
    assert (last.to_status, last.by, last.reason) == ("offline", "hub", "no heartbeat for 16 s")


async def test_a_stream_that_ends_marks_the_node_offline(hub: Hub) -> None:
    agent = hub.make_agent("n1")
    await agent.connect()
    await hub.settle()
    hub.services.nodes.update_node_status("n1", "ready", "checks pass")
    await agent.close()
    code, _ = await agent.ended()
    assert code == grpc.StatusCode.OK
    await hub.settle()
    node = hub.node("n1")
    assert not node.online and node.status == NodeStatus.OFFLINE
    assert hub.services.nodes.status_history("n1")[-1].reason == "the agent closed its stream"


async def test_maintenance_stays_maintenance(hub: Hub) -> None:
    agent = hub.make_agent("n1")
    hub.services.nodes.update_node_status("n1", "maintenance", "disk swap")
    await agent.connect()
    await hub.settle()
    assert hub.node("n1").online and hub.node("n1").status == NodeStatus.MAINTENANCE
    await agent.close()
    await agent.ended()
    await hub.settle()
    assert not hub.node("n1").online and hub.node("n1").status == NodeStatus.MAINTENANCE


async def test_online_is_written_only_when_it_changes(hub: Hub) -> None:
    agent = hub.make_agent("n1")
    await agent.connect()
    await hub.settle()
    stored = hub.node("n1")
    other = hub.make_agent("n1", identity=agent.identity)
    await other.connect()  # replaces the first stream: still online, nothing to write
    await hub.settle()
    assert hub.node("n1") is stored


async def test_a_second_stream_replaces_the_first_without_an_offline_flap(hub: Hub) -> None:
    first = hub.make_agent("n1")
    await first.connect()
    await hub.settle()
    second = hub.make_agent("n1", identity=first.identity)
    await second.connect()
    code, details = await first.ended()
    assert code == grpc.StatusCode.ABORTED
    assert "replaced" in details
    await hub.settle()
    assert hub.registry.get("n1").peer  # the second one is the session now
    await second.sync()
    node = hub.node("n1")
    assert node.online and node.status == NodeStatus.ONLINE
    assert [c.to_status for c in hub.services.nodes.status_history("n1")] == ["offline", "online"]


async def test_inventory_is_merged_and_written_only_when_it_changed(hub: Hub) -> None:
    agent = hub.make_agent("n1", hardware={"cpu": {"cores": 8}, "rack_note": "kept"})
    hardware = struct_pb2.Struct()
    hardware.update({"cpu": {"cores": 32, "model": "EPYC"}, "memory_mb": 65536})
    inventory = pb.Inventory(hardware=hardware)
    await agent.connect(inventory=inventory)
    await hub.settle()
    node = hub.node("n1")
    assert node.hardware == {"cpu": {"cores": 32, "model": "EPYC"}, "memory_mb": 65536, "rack_note": "kept",
                             "agent": {"version": "test", "capabilities": []}}
    assert isinstance(node.hardware["memory_mb"], int)

    await agent.send(inventory=inventory)  # the same again: no write
    await agent.sync()
    await hub.settle()
    assert hub.node("n1") is node

    network = struct_pb2.Struct()
    network.update({"ip": "10.0.0.5"})
    await agent.send(inventory=pb.Inventory(network=network))
    await agent.sync()
    await hub.settle()
    assert hub.node("n1").network == {"ip": "10.0.0.5"}
    assert hub.node("n1").hardware == node.hardware


# --- credentials and deletion close live streams ------------------------------------------


@pytest.mark.parametrize("change", ["rotate", "revoke"])
async def test_a_changed_credential_closes_the_stream(hub: Hub, change: str) -> None:
    agent = hub.make_agent("n1")
    await agent.connect()
    if change == "rotate":
        hub.services.credentials.issue("n1")
    else:
        hub.services.credentials.revoke("n1")
    code, details = await agent.ended()
    assert code == grpc.StatusCode.UNAUTHENTICATED
    assert details == f"the credential for node n1 was {change}d"
    await agent.open()  # the same certificate again
    await agent.send(hello=agent.hello())
    code, details = await agent.ended()
    assert code == grpc.StatusCode.UNAUTHENTICATED
    assert details == "the certificate of node n1 was revoked or replaced; issue a new join token to re-enroll it"


async def test_deleting_a_connected_node_closes_its_stream(hub: Hub) -> None:
    agent = hub.make_agent("n1")
    await agent.connect()
    await hub.settle()
    hub.services.nodes.delete_node("n1")
    code, _ = await agent.ended()
    assert code in (grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.NOT_FOUND)
    await hub.settle()
    assert not hub.registry.connected("n1")
    assert "n1" not in hub.stores.credentials
    assert hub.runtime.live.find("n1") is None


# --- hub restarts and shutdown --------------------------------------------------------------


async def test_nodes_left_online_by_a_previous_hub_go_offline_when_their_agent_does_not_return(hub: Hub) -> None:
    hub.services.nodes.create_node({"id": "gone", "name": "gone", "type": "physical"})
    hub.services.nodes.set_online("gone", True)
    hub.services.nodes.update_node_status("gone", "online", "before the restart")
    back = hub.make_agent("back")
    hub.services.nodes.set_online("back", True)
    await back.connect()
    hub.clock.advance(10)
    hub.registry.check_timeouts()
    await hub.settle()
    assert hub.node("gone").online  # still within the grace of 3 heartbeat intervals

    hub.clock.advance(6)
    await back.heartbeat()
    await back.sync()
    hub.registry.check_timeouts()
    await hub.settle()
    assert not hub.node("gone").online and hub.node("gone").status == NodeStatus.OFFLINE
    assert hub.services.nodes.status_history("gone")[-1].reason == "agent did not reconnect after the hub restarted"
    assert hub.node("back").online


async def test_shutdown_closes_streams_and_leaves_nodes_online(hub: Hub) -> None:
    agent = hub.make_agent("n1")
    await agent.connect()
    await hub.settle()
    await hub.runtime.stop(grace=1)
    code, details = await agent.ended()
    assert code == grpc.StatusCode.UNAVAILABLE
    assert "shutting down" in details
    assert hub.node("n1").online  # a hub that stops says nothing about its agents
