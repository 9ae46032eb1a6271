"""A run's secret params never come back out of the hub: REST, gRPC, logs, files.

Only the RunPipeline command to the node's agent carries the real value. A
fake agent (real gRPC) reports the secret back in every way an older or
careless agent could (step outputs, a refusal, container output): the hub
scrubs it while the run is in progress, and nothing the hub wrote holds it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import pytest

from console.service import PipelineCatalog
from proto import gamenode_pb2 as pb
from proto import gamenode_pb2_grpc as pb_grpc

if TYPE_CHECKING:
    from conftest import FakeAgent, Hub

SECRET = "Regi$try-pw.42"

START = """\
apiVersion: gamenode/v1
kind: Pipeline
metadata: {name: platform-start, instance: create}
params:
  image: {type: string, required: true}
  password: {type: string, default: "", secret: true}
  rcon_port: {type: integer, default: 0, secret: true}
steps:
  - {name: pull, action: image.pull, with: {image: "${params.image}", password: "${params.password}"}}
  - {name: run, action: container.run, with: {image: "${params.image}"}}
"""


@pytest.fixture
async def client(hub: Hub) -> AsyncIterator[httpx.AsyncClient]:
    async with await hub.client() as client:
        yield client


@pytest.fixture
def catalog(hub: Hub, tmp_path: Path) -> None:
    directory = tmp_path / "pipelines"
    directory.mkdir()
    (directory / "platform-start.yaml").write_text(START)
    hub.services.runs.catalog = PipelineCatalog(directory)


async def online(hub: Hub) -> FakeAgent:
    agent = hub.make_agent("n1", hardware={"cpu": {"model": "EPYC", "cores": 8}, "memory_mb": 16384})
    await agent.connect()
    return agent


async def start(client: httpx.AsyncClient, **params: Any) -> httpx.Response:
    return await client.post("/api/v1/nodes/n1/pipelines", json={
        "pipeline": "platform-start", "params": {"image": "game:1", **params}})


async def report(agent: FakeAgent, **body: Any) -> None:
    await agent.event(**body)
    await agent.sync()


def files_holding(root: Path, needle: str) -> list[str]:
    return [str(p.relative_to(root)) for p in root.rglob("*") if p.is_file() and needle.encode() in p.read_bytes()]


@pytest.mark.usefixtures("catalog")
async def test_what_the_hub_answers_and_writes_never_holds_a_secret(
    hub: Hub, client: httpx.AsyncClient, hub_stub: pb_grpc.HubServiceStub
) -> None:
    agent = await online(hub)
    r = await start(client, password=SECRET)
    assert r.status_code == 201, r.text
    run = r.json()
    command = (await agent.read_until("command")).command.run_pipeline
    assert command.params["password"] == SECRET  # the agent, and only the agent, gets it

    source = f"instance:{run['instance_id']}"
    await report(agent, command_ack=pb.CommandAck(command_id=f"run:{run['id']}", ok=True))
    started = pb.PipelineEvent(run_id=run["id"], step="pull", state=pb.STEP_STATE_SUCCEEDED, attempt=1,
                               message=f"logged in with {SECRET}")
    started.outputs.update({"auth": f"user:{SECRET}", SECRET: [SECRET]})
    await report(agent, pipeline_event=started)
    await report(agent, log_chunk=pb.LogChunk(source=source, lines=[pb.LogLine(text=f"login -p {SECRET} ok")]))
    await hub.settle()

    answers = [
        (await client.get(f"/api/v1/runs/{run['id']}")).text,
        (await client.get("/api/v1/runs")).text,
        (await client.get(f"/api/v1/instances/{run['instance_id']}")).text,
        (await client.get("/api/v1/logs", params={"instance": run["instance_id"]})).text,
        str(await hub_stub.GetRun(pb.GetRunRequest(run_id=run["id"]))),
        str(await hub_stub.ListRuns(pb.ListRunsRequest(node_id="n1"))),
        str(await hub_stub.QueryLogs(pb.LogQuery(instance_id=run["instance_id"]))),
    ]
    for answer in answers:
        assert SECRET not in answer
    shown = (await client.get(f"/api/v1/runs/{run['id']}")).json()
    assert shown["params"]["password"] == "***"
    assert shown["steps"][0]["message"] == "logged in with ***"
    assert shown["steps"][0]["outputs"] == {"auth": "user:***", "***": ["***"]}
    assert "login -p *** ok" in answers[3]

    hub.runtime.logs.flush()
    data_dir = hub.runtime.settings.data_dir
    assert files_holding(data_dir, SECRET) == []  # run-secrets/ emptied by the ack; logs, runs, audit clean


@pytest.mark.usefixtures("catalog")
async def test_an_agents_refusal_is_scrubbed_and_a_bad_secret_is_not_quoted(
    hub: Hub, client: httpx.AsyncClient
) -> None:
    agent = await online(hub)
    refused = await start(client, rcon_port=SECRET)  # not an integer: 422, the value not quoted
    assert refused.status_code == 422
    assert SECRET not in refused.text and "secret param" in refused.text

    run = (await start(client, password=SECRET)).json()
    await agent.read_until("command")
    await report(agent, command_ack=pb.CommandAck(command_id=f"run:{run['id']}", ok=False,
                                                  error=f"cannot log in as {SECRET}"))
    await hub.settle()
    failed = (await client.get(f"/api/v1/runs/{run['id']}")).json()
    assert failed["state"] == "failed" and failed["error"] == "the agent refused the run: cannot log in as ***"
    assert hub.services.runs.secrets_on("n1") == []  # the run ended: the hub forgot the value
    assert files_holding(hub.runtime.settings.data_dir, SECRET) == []
