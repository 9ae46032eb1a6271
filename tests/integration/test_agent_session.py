"""`agent.session.AgentSession` against a fake hub: a grpc.aio AgentService written here, on 127.0.0.1.

The fake hub behaves as the real one must: it answers Hello with a Welcome
whose `resume_from_seq` is one past the highest event seq it handled, ignores
events it already has, acks cumulatively (unless told not to), and can send
commands. Nothing here asserts a duration: waits are generous upper bounds.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import grpc
import pytest

from agent.errors import HubRefused, HubUnavailable
from agent.session import AgentSession
from agent.settings import AgentSettings
from agent.state import CommandOutcome
from proto import gamenode_pb2 as pb
from proto import gamenode_pb2_grpc as pb_grpc

WAIT = 15.0
"""Seconds any condition may take before the test fails (an upper bound, not a measurement)."""
TOKEN = "tok-s3cret-123"
REPO_ROOT = Path(__file__).resolve().parents[2]
SERVER_OPTIONS = [
    ("grpc.keepalive_permit_without_calls", 1),
    ("grpc.http2.min_recv_ping_interval_without_data_ms", 10_000),
    ("grpc.http2.min_ping_interval_without_data_ms", 10_000),
]


class FakeHub(pb_grpc.AgentServiceServicer):
    """Records what agents send; keeps `last_seq` across server restarts (the same object is re-served)."""

    def __init__(self, *, refuse: bool = False, auto_ack: bool = True, interval_ms: int = 100) -> None:
        self.refuse = refuse
        self.auto_ack = auto_ack
        self.interval_ms = interval_ms
        self.hellos: list[pb.Hello] = []
        self.welcomes: list[pb.Welcome] = []
        self.connections: list[list[pb.AgentMessage]] = []
        """Every message after Hello, per connection."""
        self.events: list[pb.AgentMessage] = []
        """Reliable events, each seq once, in arrival order."""
        self.duplicates: list[pb.AgentMessage] = []
        self.last_seq = 0
        self.eofs = 0
        """Streams the agent half-closed cleanly."""
        self.ended = 0
        """Streams that ended, one way or another."""
        self._outgoing: asyncio.Queue[pb.HubMessage | None] | None = None

    async def Connect(self, request_iterator: Any, context: Any) -> None:
        first = await context.read()
        self.hellos.append(first.hello)
        if self.refuse:
            await context.abort(grpc.StatusCode.UNAUTHENTICATED, "unknown node or credential")
        queue: asyncio.Queue[pb.HubMessage | None] = asyncio.Queue()
        self._outgoing = queue
        welcome = pb.Welcome(
            session_id=f"s{len(self.hellos)}",
            resumed=bool(first.hello.previous_session_id),
            heartbeat_interval_ms=self.interval_ms,
            metrics_interval_ms=self.interval_ms,
            resume_from_seq=self.last_seq + 1,
        )
        self.welcomes.append(welcome)
        await context.write(pb.HubMessage(welcome=welcome))
        received: list[pb.AgentMessage] = []
        self.connections.append(received)
        reader = asyncio.create_task(self._read(context, received, queue))
        try:
            while (out := await queue.get()) is not None:
                await context.write(out)
        finally:
            reader.cancel()
            self.ended += 1

    async def _read(self, context: Any, received: list[pb.AgentMessage],
                    queue: asyncio.Queue[pb.HubMessage | None]) -> None:
        while (message := await context.read()) is not grpc.aio.EOF:
            received.append(message)
            if not message.seq:
                continue
            if message.seq > self.last_seq:
                self.events.append(message)
                self.last_seq = message.seq
            else:
                self.duplicates.append(message)
            if self.auto_ack:
                queue.put_nowait(pb.HubMessage(ack=pb.EventAck(up_to_seq=self.last_seq)))
        self.eofs += 1
        queue.put_nowait(None)

    def send(self, message: pb.HubMessage) -> None:
        assert self._outgoing is not None, "no agent connected"
        self._outgoing.put_nowait(message)

    def kinds(self, connection: int = -1) -> list[str]:
        return [str(m.WhichOneof("body")) for m in self.connections[connection]]

    def received(self, kind: str) -> list[pb.AgentMessage]:
        return [m for conn in self.connections for m in conn if m.WhichOneof("body") == kind]


class Served:
    """A FakeHub served on 127.0.0.1; `stop()` then `start()` serves it again on the same port."""

    def __init__(self, hub: FakeHub) -> None:
        self.hub = hub
        self.port = 0
        self._server: Any = None

    async def start(self) -> None:
        server = grpc.aio.server(options=SERVER_OPTIONS)
        pb_grpc.add_AgentServiceServicer_to_server(self.hub, server)
        self.port = server.add_insecure_port(f"127.0.0.1:{self.port}")
        await server.start()
        self._server = server

    async def stop(self) -> None:
        if self._server is not None:
            await self._server.stop(grace=None)
            self._server = None


@pytest.fixture
async def served() -> AsyncIterator[Served]:
    target = Served(FakeHub())
    await target.start()
    yield target
    await target.stop()


class FakeRuntime:
    status = "unavailable: no docker in this test"

    def count_instances(self) -> int | None:
        return None

    def close(self) -> None:
        pass


def _settings(state_dir: Path, port: int, **overrides: Any) -> AgentSettings:
    values: dict[str, Any] = {
        "hub": f"127.0.0.1:{port}", "node_id": "node-1", "token": TOKEN, "state_dir": state_dir,
        "backoff_base": 0.02, "backoff_cap": 0.2, "welcome_timeout": WAIT, "once_ack_timeout": WAIT,
        "close_grace": WAIT,
    }
    values.update(overrides)
    return AgentSettings(**values)


class Running:
    """An AgentSession running in a task."""

    def __init__(self, session: AgentSession) -> None:
        self.session = session
        self.task = asyncio.create_task(session.run())

    async def stop(self) -> None:
        self.session.close()
        await asyncio.wait_for(self.task, WAIT)


def _start(state_dir: Path, port: int, **overrides: Any) -> Running:
    return Running(AgentSession(_settings(state_dir, port, **overrides), runtime=FakeRuntime()))


async def eventually(predicate: Callable[[], bool], what: str) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + WAIT
    while not predicate():
        if loop.time() > deadline:
            pytest.fail(f"gave up waiting for: {what}")
        await asyncio.sleep(0.01)


def _event(progress: int) -> pb.PipelineEvent:
    return pb.PipelineEvent(run_id="run-1", step="pull", state=pb.STEP_STATE_RUNNING, progress=progress)


def _command(seq: int, cid: str, **action: Any) -> pb.HubMessage:
    return pb.HubMessage(seq=seq, command=pb.Command(command_id=cid, **action))


# --- the tests ---------------------------------------------------------------------


async def test_hello_then_heartbeats_and_metrics_at_the_welcomes_intervals(
    served: Served, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    hub = served.hub
    agent = _start(tmp_path, served.port)  # default intervals 5 s / 10 s: the Welcome's 100 ms must win
    await eventually(lambda: len(hub.received("heartbeat")) >= 3 and len(hub.received("metrics")) >= 3,
                     "3 heartbeats and 3 metrics batches")
    await agent.stop()

    hello = hub.hellos[0]
    assert (hello.node_id, hello.credential, hello.agent_version) == ("node-1", TOKEN, "0.1.0")
    assert {"heartbeat", "metrics", "pipeline"} <= set(hello.capabilities)
    assert "docker" not in hello.capabilities
    assert (hello.previous_session_id, hello.last_command_seq, hello.first_unacked_seq) == ("", 0, 1)
    assert {"cpu", "memory_mb", "disks", "gpus", "hostname", "os", "kernel"} <= set(hello.inventory.hardware.keys())
    assert "interfaces" in hello.inventory.network

    heartbeat = hub.received("heartbeat")[0].heartbeat
    assert heartbeat.runtime == "unavailable: no docker in this test"
    assert heartbeat.instances == 0 and heartbeat.sent_at.seconds > 0
    sample = hub.received("metrics")[0].metrics.samples[0]
    assert sample.memory_total_bytes > 0 and sample.at.seconds > 0
    assert all(m.seq == 0 for m in hub.received("heartbeat") + hub.received("metrics"))
    assert hub.eofs == 1  # closed politely
    assert agent.session.session_id == "s1"
    assert TOKEN not in caplog.text
    assert "[node node-1]" in caplog.text


async def test_events_emitted_while_the_hub_is_down_arrive_once_in_order(served: Served, tmp_path: Path) -> None:
    hub = served.hub
    hub.auto_ack = False  # the hub will have event 1 but never ack it: the Welcome must say so
    agent = _start(tmp_path, served.port)
    await eventually(lambda: agent.session.connected, "connected")
    first = agent.session.emit_pipeline_event(_event(10))
    await eventually(lambda: hub.last_seq == first, "the first event")
    await served.stop()
    await eventually(lambda: not agent.session.connected, "disconnected")

    seqs = [agent.session.emit_pipeline_event(_event(p)) for p in (20, 30, 40)]
    assert seqs == [first + 1, first + 2, first + 3]
    assert [m.seq for m in agent.session.outbox.pending()] == [first, *seqs]  # event 1 is still unacked

    hub.auto_ack = True
    await served.start()  # the same port, the same hub memory
    await eventually(lambda: hub.last_seq == seqs[-1], "the three events")
    await eventually(lambda: len(agent.session.outbox) == 0, "acks")
    await agent.stop()

    assert served.port == int(agent.session.settings.hub.rsplit(":", 1)[1])
    assert len(hub.hellos) == 2
    assert hub.hellos[1].previous_session_id == "s1"
    assert hub.hellos[1].first_unacked_seq == first
    assert hub.welcomes[1].resume_from_seq == first + 1
    second = [m for m in hub.connections[1] if m.seq]
    assert [m.seq for m in second] == seqs  # resent from resume_from_seq only, in order
    assert [m.pipeline_event.progress for m in second] == [20, 30, 40]
    assert hub.duplicates == []
    assert [m.seq for m in hub.events] == [first, *seqs]
    assert list(agent.session.outbox.directory.iterdir()) == []


async def test_a_duplicated_command_runs_once(served: Served, tmp_path: Path) -> None:
    hub = served.hub
    runs: list[str] = []

    async def ping(command: pb.Command) -> CommandOutcome:
        runs.append(command.command_id)
        return CommandOutcome(True)

    session = AgentSession(_settings(tmp_path, served.port), runtime=FakeRuntime())
    session.register_command("ping", ping)
    agent = Running(session)
    await eventually(lambda: session.connected, "connected")
    hub.send(_command(1, "c-1", ping=pb.Ping()))
    hub.send(_command(2, "c-1", ping=pb.Ping()))
    hub.send(_command(3, "run-7", run_pipeline=pb.RunPipeline(run_id="run-7", pipeline_yaml="x")))
    hub.send(_command(4, "cfg-1", config_update=pb.ConfigUpdate(heartbeat_interval_ms=250)))
    await eventually(lambda: len(hub.received("command_ack")) == 4, "4 acks")
    await eventually(lambda: len(session.outbox) == 0, "acks acked")
    await agent.stop()

    acks = [m.command_ack for m in hub.received("command_ack")]
    assert runs == ["c-1"]
    assert acks[0] == pb.CommandAck(command_id="c-1", ok=True)
    assert acks[1] == pb.CommandAck(command_id="c-1", ok=True, duplicate=True)
    assert (acks[2].command_id, acks[2].ok) == ("run-7", False)  # an invalid pipeline: refused with the reason
    assert acks[2].error.startswith("a pipeline is a mapping")
    failed = [m.pipeline_event for m in hub.received("pipeline_event")]
    assert [(e.run_id, e.state, e.message) for e in failed] == [("run-7", pb.STEP_STATE_FAILED, acks[2].error)]
    assert acks[3] == pb.CommandAck(command_id="cfg-1", ok=True)
    assert session.heartbeat_interval == 0.25
    assert all(m.seq > 0 for m in hub.received("command_ack"))
    assert session.store.state.last_command_seq == 4


async def test_a_restarted_agent_resends_persisted_events(served: Served, tmp_path: Path) -> None:
    hub = served.hub
    hub.auto_ack = False
    agent = _start(tmp_path, served.port)
    await eventually(lambda: agent.session.connected, "connected")
    seqs = [agent.session.emit_pipeline_event(_event(p)) for p in (1, 2)]
    agent.session.emit_log(pb.LogChunk(source="agent", lines=[pb.LogLine(text="volatile")]))
    await eventually(lambda: hub.last_seq == seqs[-1] + 1, "3 events")
    await agent.stop()

    fresh = Served(FakeHub())  # a hub that knows nothing: resume_from_seq 1
    await fresh.start()
    try:
        restarted = _start(tmp_path, fresh.port)
        await eventually(lambda: fresh.hub.last_seq == seqs[-1], "the persisted events")
        later = restarted.session.emit_pipeline_event(_event(3))
        await eventually(lambda: fresh.hub.last_seq == later, "a new event")
        await restarted.stop()
    finally:
        await fresh.stop()
    assert fresh.hub.hellos[0].previous_session_id == "s1"
    assert fresh.hub.hellos[0].first_unacked_seq == seqs[0]
    assert [m.seq for m in fresh.hub.events] == [*seqs, later]  # the log chunk was volatile
    assert [m.pipeline_event.progress for m in fresh.hub.events] == [1, 2, 3]
    assert later > seqs[-1] + 1


async def test_events_emitted_before_any_connection_survive_a_restart(tmp_path: Path) -> None:
    nowhere = Served(FakeHub())
    await nowhere.start()
    port = nowhere.port
    await nowhere.stop()
    agent = _start(tmp_path, port)
    seq = agent.session.emit_pipeline_event(_event(5))
    await agent.stop()

    later = Served(FakeHub())
    later.port = port
    await later.start()
    try:
        again = _start(tmp_path, port)
        await eventually(lambda: later.hub.last_seq == seq, "the event")
        await again.stop()
    finally:
        await later.stop()
    assert later.hub.events[0].pipeline_event.progress == 5


async def test_unauthenticated_keeps_backing_off(
    served: Served, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    served.hub.refuse = True
    agent = _start(tmp_path, served.port)
    await eventually(lambda: len(served.hub.hellos) >= 3, "3 attempts")
    assert not agent.task.done()
    assert agent.session.backoff.attempt >= 2
    await agent.stop()
    assert "hub refused the credential for node node-1" in caplog.text
    assert TOKEN not in caplog.text


async def test_unauthenticated_in_burst_mode_is_an_error(served: Served, tmp_path: Path) -> None:
    served.hub.refuse = True
    session = AgentSession(_settings(tmp_path, served.port, once=True), runtime=FakeRuntime())
    with pytest.raises(HubRefused, match="hub refused the credential for node node-1"):
        await asyncio.wait_for(session.run(), WAIT)
    assert len(served.hub.hellos) == 1


async def test_burst_mode_reports_once_and_flushes(served: Served, tmp_path: Path) -> None:
    session = AgentSession(_settings(tmp_path, served.port, once=True), runtime=FakeRuntime())
    seq = session.emit_pipeline_event(_event(50))
    await asyncio.wait_for(session.run(), WAIT)
    assert served.hub.kinds(0).count("heartbeat") == 1
    assert served.hub.kinds(0).count("metrics") == 1
    assert [m.seq for m in served.hub.events] == [seq]
    assert len(session.outbox) == 0
    assert served.hub.eofs == 1


async def test_burst_mode_without_a_hub_is_an_error(tmp_path: Path) -> None:
    nowhere = Served(FakeHub())
    await nowhere.start()
    await nowhere.stop()
    session = AgentSession(_settings(tmp_path, nowhere.port, once=True), runtime=FakeRuntime())
    with pytest.raises(HubUnavailable, match="UNAVAILABLE"):
        await asyncio.wait_for(session.run(), WAIT)


# --- the real command ---------------------------------------------------------------


async def _agent_process(port: int, tmp_path: Path, *extra: str) -> asyncio.subprocess.Process:
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN + "\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("GAMENODE_")}
    return await asyncio.create_subprocess_exec(
        sys.executable, "-m", "agent", "--hub", f"127.0.0.1:{port}", "--node-id", "node-9",
        "--token", f"@{token_file}", "--state-dir", str(tmp_path / "state"), *extra,
        cwd=REPO_ROOT, env=env, stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )


async def test_sigterm_stops_the_agent_cleanly(served: Served, tmp_path: Path) -> None:
    proc = await _agent_process(served.port, tmp_path)
    try:
        await eventually(lambda: len(served.hub.received("heartbeat")) >= 1, "a heartbeat from the process")
        proc.send_signal(signal.SIGTERM)
        _, stderr = await asyncio.wait_for(proc.communicate(), WAIT)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert proc.returncode == 0, stderr.decode()
    assert served.hub.hellos[0].credential == TOKEN
    assert TOKEN.encode() not in stderr
    assert b"agent stopped" in stderr
    assert (tmp_path / "state" / "state.json").exists()
    await eventually(lambda: served.hub.ended == 1, "the stream's end")


async def test_cli_burst_mode_exits_non_zero_when_refused(served: Served, tmp_path: Path) -> None:
    served.hub.refuse = True
    proc = await _agent_process(served.port, tmp_path, "--once")
    _, stderr = await asyncio.wait_for(proc.communicate(), WAIT)
    assert proc.returncode == 1
    assert "gamenode agent: error: hub refused the credential for node node-9" in stderr.decode()
