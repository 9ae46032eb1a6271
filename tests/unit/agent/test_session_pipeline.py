"""`agent.session.AgentSession` wires pipelines and instances: the run_pipeline, cancel_run and
container_action commands, events through the outbox, and resuming runs when the agent starts."""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from google.protobuf.struct_pb2 import Struct

from agent.pipeline.context import StepContext
from agent.pipeline.engine import RESUMED, PipelineRunner
from agent.pipeline.runs import RunRecord, StepRecord
from agent.runtime.docker import ContainerInfo
from agent.session import AgentSession
from agent.settings import AgentSettings
from proto import gamenode_pb2 as pb

WAIT = 10.0
PIPELINE = """\
apiVersion: gamenode/v1
kind: Pipeline
metadata: {name: t}
params: {image: {type: string, required: true}, port: {type: integer, default: 1}}
steps:
  - {name: pull, action: image.pull, with: {image: "${params.image}"}}
  - {name: run, action: shell, with: {command: "run ${params.port}"}}
"""


class FakeRuntime:
    status = "unavailable: no docker in this test"

    def __init__(self) -> None:
        self.calls: list[tuple[str, str]] = []

    def count_instances(self) -> int | None:
        return None

    def close(self) -> None:
        pass

    def list_managed(self, all: bool = True) -> list[ContainerInfo]:
        return [ContainerInfo("c1", "gn-i1", "i1", "r1", "running", 0, "game:1", None, None, "")]

    def inspect(self, name_or_id: str) -> ContainerInfo | None:
        return None

    def stop(self, name_or_id: str, grace: float) -> bool:
        self.calls.append(("stop", name_or_id))
        return True

    def watch_events(self, on_event: Callable[[str, ContainerInfo], None], stop: threading.Event) -> None:
        stop.wait()

    def stream_logs(self, name_or_id: str, since: float | None, stop: threading.Event, follow: bool = True,
                    tail: int | None = None) -> Iterator[tuple[str, str]]:
        yield from ()


class Actions(dict[str, Any]):
    def __init__(self) -> None:
        super().__init__()
        self.calls: list[tuple[str, Any]] = []
        self.block = asyncio.Event()
        self.block.set()
        for name in ("image.pull", "shell"):
            self[name] = self._run

    async def _run(self, ctx: StepContext, inputs: Any) -> dict[str, Any]:
        self.calls.append((ctx.step, inputs))
        await self.block.wait()
        return {"step": ctx.step}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _session(state_dir: Path, actions: Actions) -> AgentSession:
    settings = AgentSettings(hub=f"127.0.0.1:{_free_port()}", node_id="n1", token="t", state_dir=state_dir,
                             insecure=True, backoff_base=0.05, backoff_cap=0.1, welcome_timeout=1.0)
    session = AgentSession(settings, runtime=FakeRuntime())  # type: ignore[arg-type]
    session.runner = PipelineRunner(session, settings, session.runtime, session.ports, actions=actions)
    return session


def _command(cid: str, **action: Any) -> pb.Command:
    return pb.Command(command_id=cid, **action)


def _run_pipeline(run_id: str, params: dict[str, Any], yaml_text: str = PIPELINE) -> pb.Command:
    struct = Struct()
    struct.update(params)
    return _command(f"c-{run_id}", run_pipeline=pb.RunPipeline(run_id=run_id, pipeline_yaml=yaml_text,
                                                               params=struct, instance_id="i1"))


def _events(session: AgentSession, run_id: str) -> list[pb.PipelineEvent]:
    return [m.pipeline_event for m in session.outbox.pending()
            if m.WhichOneof("body") == "pipeline_event" and m.pipeline_event.run_id == run_id]


async def eventually(predicate: Callable[[], bool], what: str) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + WAIT
    while not predicate():
        if loop.time() > deadline:
            pytest.fail(f"gave up waiting for: {what}")
        await asyncio.sleep(0.005)


async def test_run_pipeline_is_acked_once_accepted_and_reports_through_the_outbox(tmp_path: Path) -> None:
    actions = Actions()
    session = _session(tmp_path, actions)
    ack = await session.commands.execute(1, _run_pipeline("r1", {"image": "game:1", "port": 8080}))
    assert ack == pb.CommandAck(command_id="c-r1", ok=True)
    await session.runner.wait("r1")
    assert [step for step, _ in actions.calls] == ["pull", "run"]
    assert actions.calls[1][1].command == "run 8080"  # the Struct's 8080.0 is an integer again
    events = _events(session, "r1")
    assert (events[0].step, events[0].state) == ("", pb.STEP_STATE_RUNNING)
    assert (events[-1].step, events[-1].state) == ("", pb.STEP_STATE_SUCCEEDED)
    assert any(f.name.endswith(".pb") for f in session.outbox.directory.iterdir())  # persisted events


async def test_an_invalid_run_is_refused_with_the_same_message_as_its_event(tmp_path: Path) -> None:
    session = _session(tmp_path, Actions())
    ack = await session.commands.execute(1, _run_pipeline("r2", {"port": "x"}))
    assert ack is not None and not ack.ok
    assert "params.image: required param missing" in ack.error
    assert [(e.state, e.message) for e in _events(session, "r2")] == [(pb.STEP_STATE_FAILED, ack.error)]


async def test_cancel_run_reaches_the_runner(tmp_path: Path) -> None:
    actions = Actions()
    actions.block.clear()
    session = _session(tmp_path, actions)
    await session.commands.execute(1, _run_pipeline("r3", {"image": "game:1"}))
    await eventually(lambda: len(actions.calls) == 1, "the first step")
    ack = await session.commands.execute(2, _command("k1", cancel_run=pb.CancelRun(run_id="r3", reason="enough")))
    assert ack == pb.CommandAck(command_id="k1", ok=True)
    await session.runner.wait("r3")
    assert _events(session, "r3")[-1].message == "enough"
    unknown = await session.commands.execute(3, _command("k2", cancel_run=pb.CancelRun(run_id="nope")))
    assert unknown == pb.CommandAck(command_id="k2", ok=False, error="unknown run nope")


async def test_container_action_reaches_the_runtime(tmp_path: Path) -> None:
    session = _session(tmp_path, Actions())
    action = pb.ContainerAction(action=pb.ContainerAction.ACTION_STOP, instance_id="i1")
    ack = await session.commands.execute(1, _command("a1", container_action=action))
    assert ack == pb.CommandAck(command_id="a1", ok=True)
    assert session.runtime.calls == [("stop", "c1")]  # type: ignore[attr-defined]


async def test_the_session_resumes_unfinished_runs_and_reports_instances(tmp_path: Path) -> None:
    actions = Actions()
    session = _session(tmp_path, actions)
    record = RunRecord("r4", PIPELINE, {"image": "game:1"}, "i1")
    record.steps = {"pull": StepRecord("succeeded", 1, {"step": "pull"}), "run": StepRecord("running", 1)}
    session.runner.store.save(record)
    task = asyncio.create_task(session.run())  # no hub: it keeps reconnecting meanwhile
    await eventually(lambda: session.runner.store.load("r4").state == "succeeded", "the resumed run")
    await eventually(lambda: any(m.WhichOneof("body") == "instance_report" for m in session.outbox.pending()),
                     "an instance report")
    session.close()
    await asyncio.wait_for(task, WAIT)
    assert [step for step, _ in actions.calls] == ["run"]
    lines = [line.text for m in session.outbox.pending() if m.WhichOneof("body") == "log_chunk"
             for line in m.log_chunk.lines]
    assert RESUMED in lines
