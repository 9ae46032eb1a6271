"""Pipeline runs through the hub: REST and gRPC, a fake agent on the stream, WatchRun, restarts."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import grpc
import httpx
import pytest
from google.protobuf import struct_pb2
from grpc import aio

from console.hub.run_bridge import cancel_command_id, run_command_id
from console.hub.runtime import HubRuntime
from console.models import InstanceState, RunState
from console.service import PipelineCatalog, Services
from console.settings import HubSettings
from proto import gamenode_pb2 as pb
from proto import gamenode_pb2_grpc as pb_grpc

if TYPE_CHECKING:
    from conftest import FakeAgent, Hub

HARDWARE = {"cpu": {"model": "EPYC", "cores": 8}, "memory_mb": 16384}
WAIT = 10.0

START = """\
apiVersion: gamenode/v1
kind: Pipeline
metadata: {name: platform-start, description: Start a game, instance: create}
params:
  image: {type: string, required: true}
  password: {type: string, default: "", secret: true}
steps:
  - name: pull
    action: image.pull
    with: {image: "${params.image}", password: "${params.password}"}
  - name: run
    action: container.run
    with: {image: "${params.image}"}
"""

OUTPUTS = {"container_id": "c0ffee", "ports": [{"name": "game", "container_port": 8080, "host_port": 31000}]}


@pytest.fixture
async def client(hub: Hub) -> AsyncIterator[httpx.AsyncClient]:
    async with await hub.client() as client:
        yield client


@pytest.fixture
def catalog(hub: Hub, tmp_path: Path) -> Path:
    directory = tmp_path / "pipelines"
    directory.mkdir()
    (directory / "platform-start.yaml").write_text(START)
    hub.services.runs.catalog = PipelineCatalog(directory)
    return directory


async def online(hub: Hub, node_id: str = "n1") -> FakeAgent:
    agent = hub.make_agent(node_id, hardware=HARDWARE)
    await agent.connect()
    return agent


async def start(client: httpx.AsyncClient, node_id: str = "n1", **body: Any) -> dict[str, Any]:
    body = {"pipeline": "platform-start", "params": {"image": "game/tiny:1"}, **body}
    r = await client.post(f"/api/v1/nodes/{node_id}/pipelines", json=body)
    assert r.status_code == 201, r.text
    answer: dict[str, Any] = r.json()
    return answer


def event(run_id: str, step: str = "", state: int = pb.STEP_STATE_RUNNING, **fields: Any) -> pb.PipelineEvent:
    outputs = fields.pop("outputs", None)
    message = pb.PipelineEvent(run_id=run_id, step=step, state=state, **fields)
    if outputs is not None:
        message.outputs.update(outputs)
    return message


async def send(agent: FakeAgent, *events: pb.PipelineEvent) -> None:
    for e in events:
        await agent.event(pipeline_event=e)
    await agent.sync()  # acked only once written


async def ack(agent: FakeAgent, command: pb.HubMessage, ok: bool = True, error: str = "") -> None:
    await agent.event(command_ack=pb.CommandAck(command_id=command.command.command_id, ok=ok, error=error))
    await agent.sync()


# --- REST ---------------------------------------------------------------------------------------------


async def test_start_creates_the_instance_and_dispatches_run_pipeline(
    hub: Hub, client: httpx.AsyncClient, catalog: Path
) -> None:
    agent = await online(hub)
    run = await start(client, params={"image": "game/tiny:1", "password": "hunter2"},
                      resources={"cpu": 2, "memory_mb": 1024})
    assert run["state"] == "pending" and run["params"] == {"image": "game/tiny:1", "password": "***"}
    assert run["created_by"] == "admin (local)" and run["pipeline"] == "platform-start"

    sent = await agent.read_until("command")
    command = sent.command
    assert command.command_id == run_command_id(run["id"])
    assert command.run_pipeline.run_id == run["id"] and command.run_pipeline.instance_id == run["instance_id"]
    assert command.run_pipeline.pipeline_yaml == START
    assert dict(command.run_pipeline.params) == {"image": "game/tiny:1", "password": "hunter2"}

    instance = (await client.get(f"/api/v1/instances/{run['instance_id']}")).json()
    assert (instance["state"], instance["run_id"], instance["resources"]["cpu"]) == ("pending", run["id"], 2)
    await ack(agent, sent)
    assert (await client.get(f"/api/v1/runs/{run['id']}")).json()["state"] == "dispatched"


async def test_an_invalid_pipeline_is_422_with_paths_and_lines(hub: Hub, client: httpx.AsyncClient) -> None:
    await online(hub)
    bad = START.replace("image.pull", "image.pul")
    r = await client.post("/api/v1/nodes/n1/pipelines", json={"yaml": bad, "params": {"image": "x"}})
    assert r.status_code == 422
    body = r.json()
    assert body["error"] == "invalid_input"
    assert body["details"] == [{"path": "steps[0].action", "line": 9,
                                "message": body["details"][0]["message"]}]
    assert "unknown action 'image.pul'" in body["details"][0]["message"]
    r = await client.post("/api/v1/nodes/n1/pipelines", json={"yaml": START, "params": {}})
    assert r.status_code == 422 and r.json()["details"][0]["path"] == "params.image"


async def test_offline_and_maintenance_nodes_are_409(hub: Hub, client: httpx.AsyncClient, catalog: Path) -> None:
    hub.services.nodes.create_node({"id": "n1", "name": "n1", "type": "physical", "hardware": HARDWARE})
    r = await client.post("/api/v1/nodes/n1/pipelines", json={"pipeline": "platform-start", "params": {"image": "x"}})
    assert r.status_code == 409 and "offline" in r.json()["message"]
    await online(hub)
    await hub.settle()
    hub.services.nodes.update_node_status("n1", "maintenance", "kernel upgrade")
    r = await client.post("/api/v1/nodes/n1/pipelines", json={"pipeline": "platform-start", "params": {"image": "x"}})
    assert r.status_code == 409 and "kernel upgrade" in r.json()["message"]
    r = await client.post("/api/v1/nodes/n9/pipelines", json={"pipeline": "platform-start"})
    assert r.status_code == 404


async def test_events_drive_the_run_and_its_instance(hub: Hub, client: httpx.AsyncClient, catalog: Path) -> None:
    agent = await online(hub)
    run = await start(client, resources={"cpu": 2})
    rid, iid = run["id"], run["instance_id"]
    await ack(agent, await agent.read_until("command"))
    await send(agent, event(rid), event(rid, "pull", attempt=1, action="image.pull", progress=42,
                                        message="42 of 100 MB"))
    got = (await client.get(f"/api/v1/runs/{rid}")).json()
    assert got["state"] == "running"
    assert (got["steps"][0]["state"], got["steps"][0]["progress"], got["steps"][0]["message"]) == (
        "running", 42, "42 of 100 MB")
    assert hub.services.instances.get_instance(iid).state == InstanceState.PREPARING

    await send(agent, event(rid, "pull", pb.STEP_STATE_SUCCEEDED, attempt=1),
               event(rid, "run", attempt=1, action="container.run"),
               event(rid, "run", pb.STEP_STATE_SUCCEEDED, attempt=1, outputs=OUTPUTS),
               event(rid, "", pb.STEP_STATE_SUCCEEDED))
    got = (await client.get(f"/api/v1/runs/{rid}")).json()
    assert got["state"] == "succeeded" and got["finished_at"] is not None
    instance = (await client.get(f"/api/v1/instances/{iid}")).json()
    assert (instance["state"], instance["container_id"], instance["ports"][0]["host_port"]) == (
        "running", "c0ffee", 31000)

    listed = await client.get("/api/v1/runs", params={"node_id": "n1", "state": "succeeded"})
    assert [r["id"] for r in listed.json()] == [rid] and listed.headers["X-Total-Count"] == "1"


async def test_a_failed_pull_fails_the_instance_and_releases_it(
    hub: Hub, client: httpx.AsyncClient, catalog: Path
) -> None:
    agent = await online(hub)
    run = await start(client, resources={"cpu": 8})
    rid = run["id"]
    reason = "pull access denied for game/tiny, repository does not exist"
    await send(agent, event(rid), event(rid, "pull", pb.STEP_STATE_FAILED, attempt=1, message=reason),
               event(rid, "", pb.STEP_STATE_FAILED, message=f"step pull failed: {reason}"))
    got = (await client.get(f"/api/v1/runs/{rid}")).json()
    assert (got["state"], got["error"]) == ("failed", f"step pull failed: {reason}")
    instance = hub.services.instances.get_instance(run["instance_id"])
    assert instance.state == InstanceState.FAILED and reason in (instance.error or "")
    assert hub.services.instances.reserved("n1").cpu == 0


async def test_cancel_sends_cancel_run_and_the_agent_ends_it(
    hub: Hub, client: httpx.AsyncClient, catalog: Path
) -> None:
    agent = await online(hub)
    run = await start(client)
    rid = run["id"]
    await ack(agent, await agent.read_until("command"))
    await send(agent, event(rid), event(rid, "pull", attempt=1, progress=10))
    r = await client.post(f"/api/v1/runs/{rid}/cancel", json={"reason": "wrong image"})
    assert r.status_code == 200 and r.json()["state"] == "cancelling"
    cancel = await agent.read_until("command")
    assert cancel.command.command_id == cancel_command_id(rid)
    assert (cancel.command.cancel_run.run_id, cancel.command.cancel_run.reason) == (rid, "wrong image")
    await ack(agent, cancel)
    await send(agent, event(rid, "pull", pb.STEP_STATE_CANCELLED, attempt=1),
               event(rid, "", pb.STEP_STATE_CANCELLED, message="wrong image"))
    got = (await client.get(f"/api/v1/runs/{rid}")).json()
    assert (got["state"], got["error"]) == ("cancelled", "wrong image")
    r = await client.post(f"/api/v1/runs/{rid}/cancel")
    assert r.status_code == 409
    assert (await client.post("/api/v1/runs/run-nope/cancel")).status_code == 404


async def test_the_pipelines_of_the_catalog(hub: Hub, client: httpx.AsyncClient, catalog: Path) -> None:
    (catalog / "broken.yaml").write_text("kind: Pipeline\n")
    listed = (await client.get("/api/v1/pipelines")).json()
    assert [p["name"] for p in listed] == ["broken", "platform-start"]
    assert listed[0]["problems"]
    one = (await client.get("/api/v1/pipelines/platform-start")).json()
    assert (one["instance"], one["steps"], one["yaml"]) == ("create", ["pull", "run"], START)
    assert [(p["name"], p["required"], p["secret"]) for p in one["params"]] == [
        ("image", True, False), ("password", False, True)]
    assert (await client.get("/api/v1/pipelines/nope")).status_code == 404


# --- redelivery -----------------------------------------------------------------------------------------


async def test_an_unacked_run_is_sent_again_on_reconnect_and_duplicates_are_dropped(
    hub: Hub, client: httpx.AsyncClient, catalog: Path
) -> None:
    agent = await online(hub)
    run = await start(client)
    rid = run["id"]
    first = await agent.read_until("command")
    await agent.close()
    await agent.ended()

    await agent.connect()
    again = await agent.read_until("command")
    assert (again.seq, again.command.command_id) == (first.seq, run_command_id(rid))
    seq = await agent.event(pipeline_event=event(rid, "pull", pb.STEP_STATE_SUCCEEDED, attempt=1))
    await agent.send(seq, pipeline_event=event(rid, "pull", pb.STEP_STATE_FAILED, attempt=1))  # a resend
    await agent.sync()
    got = hub.services.runs.get_run(rid)
    assert got.state == RunState.RUNNING and got.steps[0].state == "succeeded"


async def test_a_hub_restart_dispatches_pending_runs_and_cancels_again(
    hub: Hub, client: httpx.AsyncClient, catalog: Path, tmp_path: Path, fake_agent: type[FakeAgent]
) -> None:
    agent = await online(hub)
    pending = await start(client, params={"image": "x", "password": "hunter2"})
    cancelling = await start(client)
    first = [await agent.read_until("command"), await agent.read_until("command")]
    await ack(agent, first[1])
    await client.post(f"/api/v1/runs/{cancelling['id']}/cancel", json={"reason": "enough"})
    await agent.read_until("command")
    await hub.runtime.stop(grace=0)
    await agent.ended()

    services = Services.over(hub.stores)
    settings = HubSettings(data_dir=tmp_path / "data", http_listen="127.0.0.1:0", grpc_listen="127.0.0.1:0",
                           pipeline_dir=catalog)
    runtime = HubRuntime(services, settings)
    await runtime.start("127.0.0.1:0", monitor_period=3600)
    try:
        back = fake_agent.to(runtime, "n1", identity=agent.identity)  # the same CA: its certificate still works
        back.seq = agent.seq
        await back.connect()
        got = {(await back.read_until("command")).command.command_id for _ in range(2)}
        assert got == {run_command_id(pending["id"]), cancel_command_id(cancelling["id"])}
        resent = next(c for c in back.commands if c.command.HasField("run_pipeline"))
        assert resent.command.run_pipeline.params["password"] == "hunter2"
        await back.dispose()
    finally:
        await runtime.stop(grace=0)


# --- gRPC -------------------------------------------------------------------------------------------------


async def test_start_get_list_and_cancel_over_grpc(
    hub: Hub, hub_stub: pb_grpc.HubServiceStub, catalog: Path
) -> None:
    agent = await online(hub)
    params = struct_pb2.Struct()
    params.update({"image": "game/tiny:1"})
    run = await hub_stub.StartRun(pb.StartRunRequest(node_id="n1", pipeline="platform-start", params=params),
                                  metadata=hub.bearer("tui", "operator"))
    assert run.state == "pending" and run.params["image"] == "game/tiny:1"
    assert [s.name for s in run.steps] == ["pull", "run"]
    assert hub.services.runs.get_run(run.id).created_by == "tui"
    await ack(agent, await agent.read_until("command"))
    assert (await hub_stub.GetRun(pb.GetRunRequest(run_id=run.id))).state == "dispatched"
    listed = await hub_stub.ListRuns(pb.ListRunsRequest(node_id="n1"))
    assert [r.id for r in listed.runs] == [run.id] and listed.total == 1
    cancelled = await hub_stub.CancelRun(pb.CancelRunRequest(run_id=run.id, reason="no"))
    assert cancelled.state == "cancelling"

    with pytest.raises(aio.AioRpcError) as caught:
        await hub_stub.StartRun(pb.StartRunRequest(node_id="n1", pipeline_yaml="steps: 3"))
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    with pytest.raises(aio.AioRpcError) as caught:
        await hub_stub.GetRun(pb.GetRunRequest(run_id="run-nope"))
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND


async def test_watch_run_streams_every_change_and_ends_when_the_run_does(
    hub: Hub, hub_stub: pb_grpc.HubServiceStub, client: httpx.AsyncClient, catalog: Path
) -> None:
    agent = await online(hub)
    rid = (await start(client))["id"]
    call = hub_stub.WatchRun(pb.GetRunRequest(run_id=rid))
    first = await asyncio.wait_for(call.read(), WAIT)
    assert (first.id, first.state) == (rid, "pending")

    async def until(check: Any) -> pb.Run:
        while True:
            update = await asyncio.wait_for(call.read(), WAIT)
            assert update is not aio.EOF
            if check(update):
                return update  # type: ignore[no-any-return]

    await send(agent, event(rid), event(rid, "pull", attempt=1, progress=30, message="30%"))
    progress = await until(lambda r: r.steps[0].progress == 30)
    assert progress.state == "running" and progress.steps[0].message == "30%"
    await send(agent, event(rid, "pull", pb.STEP_STATE_SUCCEEDED, attempt=1), event(rid, "", pb.STEP_STATE_SUCCEEDED))
    final = await until(lambda r: r.state == "succeeded")
    assert final.finished_at.seconds > 0
    assert await asyncio.wait_for(call.read(), WAIT) is aio.EOF
    assert await call.code() == grpc.StatusCode.OK


async def test_watch_of_a_finished_run_answers_once_and_of_an_unknown_run_not_found(
    hub: Hub, hub_stub: pb_grpc.HubServiceStub, client: httpx.AsyncClient, catalog: Path
) -> None:
    agent = await online(hub)
    rid = (await start(client))["id"]
    await send(agent, event(rid, "", pb.STEP_STATE_FAILED, message="boom"))
    answers = [r async for r in hub_stub.WatchRun(pb.GetRunRequest(run_id=rid))]
    assert [(r.state, r.error) for r in answers] == [("failed", "boom")]
    with pytest.raises(aio.AioRpcError) as caught:
        _ = [r async for r in hub_stub.WatchRun(pb.GetRunRequest(run_id="run-nope"))]
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND


async def test_log_chunks_reach_the_log_service(hub: Hub, hub_stub: pb_grpc.HubServiceStub) -> None:
    agent = await online(hub)
    await agent.event(log_chunk=pb.LogChunk(source="run:run-1", lines=[pb.LogLine(text="pulling layer 1")]))
    await agent.sync()
    answer = await hub_stub.QueryLogs(pb.LogQuery(node_id="n1", run_id="run-1"))
    assert [e.text for e in answer.entries] == ["pulling layer 1"]


async def test_an_event_is_acked_only_once_its_change_is_written(
    hub: Hub, client: httpx.AsyncClient, catalog: Path
) -> None:
    agent = await online(hub)
    rid = (await start(client))["id"]
    await agent.sync()
    gate = threading.Event()
    hub.runtime.runs._writer.submit(gate.wait)  # the writer thread is busy until the gate opens
    seq = await agent.event(pipeline_event=event(rid))
    session = hub.registry.get("n1")
    for _ in range(1000):
        if hub.registry.last_event_seq("n1") == seq:
            break
        await asyncio.sleep(0.01)
    assert hub.registry.last_event_seq("n1") == seq  # accepted...
    assert session.writes_in_flight == 1 and not session._ack_queued  # ...but not acked
    assert hub.services.runs.get_run(rid).state == RunState.PENDING
    gate.set()
    while agent.acked < seq:
        await agent.read_until("ack")
    assert hub.services.runs.get_run(rid).state == RunState.RUNNING
