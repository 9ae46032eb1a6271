"""`agent.session.AgentSession` against a fake hub: a grpc.aio AgentService written here, on 127.0.0.1.

The fake hub behaves as the real one must: it answers Hello with a Welcome
whose `resume_from_seq` is one past the highest event seq it handled, ignores
events it already has, acks cumulatively (unless told not to), and can send
commands. It enrolls nodes like the real one (Endpoints, Join with a single-use
join token, certificates from a `console.service.ca.HubCA`), serves plaintext
with the certificate proven in the Hello (`--insecure`, the default here), or,
with `tls=True`, TLS on its main port and mTLS on a second, agent port; and it
answers renewals on the live stream. Nothing here asserts a duration: waits are
generous upper bounds.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import stat
import sys
from collections.abc import AsyncIterator, Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import grpc
import pytest

from agent import pki
from agent.errors import HubRefused, HubUnavailable
from agent.identity import IdentityStore
from agent.session import AgentSession
from agent.settings import AgentSettings
from agent.state import CommandOutcome
from console.service.ca import HubCA
from proto import gamenode_pb2 as pb
from proto import gamenode_pb2_grpc as pb_grpc

WAIT = 15.0
"""Seconds any condition may take before the test fails (an upper bound, not a measurement)."""
TOKEN = "a1b2c3d4e5f6.tok-s3cret-123"
REPO_ROOT = Path(__file__).resolve().parents[2]
SERVER_OPTIONS = [
    ("grpc.keepalive_permit_without_calls", 1),
    ("grpc.http2.min_recv_ping_interval_without_data_ms", 10_000),
    ("grpc.http2.min_ping_interval_without_data_ms", 10_000),
]


class FakeHub(pb_grpc.AgentServiceServicer):
    """Records what agents send; keeps `last_seq` across server restarts (the same object is re-served)."""

    def __init__(self, ca: HubCA, *, refuse: bool = False, auto_ack: bool = True, interval_ms: int = 100,
                 tls: bool = False, lifetime: timedelta = timedelta(days=7), answer_renewals: bool = True) -> None:
        self.ca = ca
        self.refuse = refuse
        self.auto_ack = auto_ack
        self.interval_ms = interval_ms
        self.tls = tls
        self.lifetime = lifetime
        self.answer_renewals = answer_renewals
        self.agent_port = 0
        """The mTLS stream port Endpoints names (0: the same port, on a plaintext hub)."""
        self.join_tokens: dict[str, str] = {"node-1": TOKEN, "node-9": TOKEN}
        """Node id → its pending join token (taken by a successful Join)."""
        self.joins: list[pb.JoinRequest] = []
        self.issued: list[str] = []
        """Serials of every certificate issued (Join and renewals), in order."""
        self.certificates: list[bytes] = []
        self.revoked: set[str] = set()
        self.streamed_with: list[str] = []
        """The serial each accepted stream proved."""
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

    async def Endpoints(self, request: pb.EndpointsRequest, context: Any) -> pb.EndpointsResponse:
        return pb.EndpointsResponse(agent_port=self.agent_port, mtls=self.tls, hub_version="fake")

    async def Join(self, request: pb.JoinRequest, context: Any) -> pb.JoinResponse:
        self.joins.append(request)
        if self.join_tokens.get(request.node_id) != request.token:
            await context.abort(grpc.StatusCode.UNAUTHENTICATED,
                                f"invalid or expired join token for node {request.node_id}")
        del self.join_tokens[request.node_id]
        return pb.JoinResponse(certificate_pem=self._sign(request.csr_pem, request.node_id), ca_pem=self.ca.ca_pem,
                               agent_port=self.agent_port, mtls=self.tls)

    def _sign(self, csr_pem: bytes, node_id: str) -> bytes:
        cert = self.ca.sign_node(csr_pem, node_id, self.lifetime)
        self.issued.append(pki.serial_hex(cert))
        self.certificates.append(pki.cert_pem(cert))
        return self.certificates[-1]

    def _check(self, hello: pb.Hello, context: Any) -> str | None:
        """The serial the stream proved, or None when its certificate is not accepted."""
        if self.tls:
            pem = context.auth_context().get("x509_pem_cert", [b""])[0]
        else:
            pem = hello.certificate_pem
        try:
            cert, node_id = self.ca.check_node(pem)
        except pki.PkiError:
            return None
        if not self.tls and pki.verify_proof(cert, hello.node_id, hello.proof_time_ms, hello.proof) is not None:
            return None
        serial = pki.serial_hex(cert)
        return serial if node_id == hello.node_id and serial not in self.revoked else None

    async def Connect(self, request_iterator: Any, context: Any) -> None:
        first = await context.read()
        self.hellos.append(first.hello)
        if self.refuse:
            await context.abort(grpc.StatusCode.UNAUTHENTICATED, "unknown node or certificate")
        serial = self._check(first.hello, context)
        if serial is None:
            await context.abort(grpc.StatusCode.UNAUTHENTICATED,
                                f"node {first.hello.node_id}'s certificate is not accepted")
        assert serial is not None
        self.streamed_with.append(serial)
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
            if message.WhichOneof("body") == "renew" and self.answer_renewals:
                node_id = self.hellos[-1].node_id
                pem = self._sign(message.renew.csr_pem, node_id)
                queue.put_nowait(pb.HubMessage(certificate=pb.Certificate(certificate_pem=pem)))
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
    """A FakeHub served on 127.0.0.1; `stop()` then `start()` serves it again on the same port(s)."""

    def __init__(self, hub: FakeHub) -> None:
        self.hub = hub
        self.port = 0
        self.agent_port = 0
        self._server: Any = None

    async def start(self) -> None:
        server = grpc.aio.server(options=SERVER_OPTIONS)
        pb_grpc.add_AgentServiceServicer_to_server(self.hub, server)
        if self.hub.tls:
            chain = [(self.hub.ca.server_key_pem, self.hub.ca.server_pem)]
            self.port = server.add_secure_port(f"127.0.0.1:{self.port}", grpc.ssl_server_credentials(chain))
            self.agent_port = server.add_secure_port(f"127.0.0.1:{self.agent_port}", grpc.ssl_server_credentials(
                chain, root_certificates=self.hub.ca.ca_pem, require_client_auth=True))
            self.hub.agent_port = self.agent_port
        else:
            self.port = server.add_insecure_port(f"127.0.0.1:{self.port}")
        await server.start()
        self._server = server

    async def stop(self) -> None:
        if self._server is not None:
            await self._server.stop(grace=None)
            self._server = None


@pytest.fixture(scope="module")
def hub_ca(tmp_path_factory: pytest.TempPathFactory) -> HubCA:
    """The fake hubs' CA (`hub_ca.ca_path`: the file an agent's --ca names)."""
    return HubCA.load_or_create(tmp_path_factory.mktemp("fake-hub"))


@pytest.fixture(scope="module")
def other_ca(tmp_path_factory: pytest.TempPathFactory) -> HubCA:
    """Some other hub's CA."""
    return HubCA.load_or_create(tmp_path_factory.mktemp("other-hub"))


@pytest.fixture
async def served(hub_ca: HubCA) -> AsyncIterator[Served]:
    """A plaintext (--insecure) fake hub."""
    target = Served(FakeHub(hub_ca))
    await target.start()
    yield target
    await target.stop()


@pytest.fixture
async def served_tls(hub_ca: HubCA) -> AsyncIterator[Served]:
    """A fake hub with TLS on its main port and mTLS on its agent port."""
    target = Served(FakeHub(hub_ca, tls=True))
    await target.start()
    yield target
    await target.stop()


@pytest.fixture
def quick_renewal_retry(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setattr("agent.session.RENEW_RETRY_MIN", 0.2)
    yield


class FakeRuntime:
    status = "unavailable: no docker in this test"

    def count_instances(self) -> int | None:
        return None

    def close(self) -> None:
        pass


def _settings(state_dir: Path, port: int, **overrides: Any) -> AgentSettings:
    """An agent of node-1 with the join token; plaintext (`insecure`) unless `ca_file` is given."""
    values: dict[str, Any] = {
        "hub": f"127.0.0.1:{port}", "node_id": "node-1", "token": TOKEN, "state_dir": state_dir,
        "backoff_base": 0.02, "backoff_cap": 0.2, "welcome_timeout": WAIT, "once_ack_timeout": WAIT,
        "close_grace": WAIT, "insecure": "ca_file" not in overrides,
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
    assert (hello.node_id, hello.credential, hello.agent_version) == ("node-1", "", "0.1.0")
    assert [j.token for j in hub.joins] == [TOKEN]
    assert hub.streamed_with == hub.issued[:1]
    cert = pki.load_cert(hello.certificate_pem)  # no TLS: the Hello proves the certificate
    assert pki.verify_proof(cert, "node-1", hello.proof_time_ms, hello.proof) is None
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

    fresh = Served(FakeHub(hub.ca))  # a hub that knows nothing: resume_from_seq 1
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


async def test_events_emitted_before_any_connection_survive_a_restart(tmp_path: Path, hub_ca: HubCA) -> None:
    nowhere = Served(FakeHub(hub_ca))
    await nowhere.start()
    port = nowhere.port
    await nowhere.stop()
    agent = _start(tmp_path, port)
    seq = agent.session.emit_pipeline_event(_event(5))
    await agent.stop()

    later = Served(FakeHub(hub_ca))
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
    assert "hub refused node node-1's certificate: unknown node or certificate" in caplog.text
    assert "retrying" in caplog.text
    assert len(served.hub.joins) == 1  # the join token works once: not offered again
    assert TOKEN not in caplog.text


async def test_unauthenticated_in_burst_mode_is_an_error(served: Served, tmp_path: Path) -> None:
    served.hub.refuse = True
    session = AgentSession(_settings(tmp_path, served.port, once=True), runtime=FakeRuntime())
    with pytest.raises(HubRefused, match="hub refused node node-1's certificate"):
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


async def test_burst_mode_without_a_hub_is_an_error(tmp_path: Path, hub_ca: HubCA) -> None:
    nowhere = Served(FakeHub(hub_ca))
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
        "--token", f"@{token_file}", "--state-dir", str(tmp_path / "state"), "--insecure", *extra,
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
    assert [j.token for j in served.hub.joins] == [TOKEN]
    assert b"joined the hub: node certificate serial" in stderr
    assert TOKEN.encode() not in stderr
    assert b"agent stopped" in stderr
    assert (tmp_path / "state" / "state.json").exists()
    await eventually(lambda: served.hub.ended == 1, "the stream's end")


async def test_cli_burst_mode_exits_non_zero_when_refused(served: Served, tmp_path: Path) -> None:
    served.hub.refuse = True
    proc = await _agent_process(served.port, tmp_path, "--once")
    _, stderr = await asyncio.wait_for(proc.communicate(), WAIT)
    assert proc.returncode == 1
    assert "gamenode agent: error: hub refused node node-9's certificate" in stderr.decode()


# --- identity: join, mTLS, renewal, refusals -------------------------------------------------


def _tls(state_dir: Path, served: Served, ca: HubCA, **overrides: Any) -> AgentSettings:
    return _settings(state_dir, served.port, ca_file=ca.ca_path, **overrides)


async def test_joins_with_the_token_then_streams_over_mtls(
    served_tls: Served, hub_ca: HubCA, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    hub = served_tls.hub
    agent = Running(AgentSession(_tls(tmp_path, served_tls, hub_ca), runtime=FakeRuntime()))
    await eventually(lambda: len(hub.received("heartbeat")) >= 1, "a heartbeat over mTLS")
    await agent.stop()

    assert [(j.node_id, j.token) for j in hub.joins] == [("node-1", TOKEN)]
    assert hub.streamed_with == hub.issued  # the stream proved the joined certificate by TLS
    assert not hub.hellos[0].certificate_pem and not hub.hellos[0].proof  # ... not in the Hello
    store = IdentityStore(tmp_path)
    identity = store.load()
    assert identity is not None and identity.serial == hub.issued[0] and identity.node_id == "node-1"
    assert store.load_ca() == hub_ca.ca_pem
    assert stat.S_IMODE(store.key_path.stat().st_mode) == 0o600
    assert f"127.0.0.1:{served_tls.agent_port}" in caplog.text  # streamed on the port Endpoints named
    assert "joined the hub: node certificate serial" in caplog.text
    assert TOKEN not in caplog.text and "PRIVATE KEY" not in caplog.text


async def test_a_restart_reuses_the_identity_without_token_or_ca(
    served_tls: Served, hub_ca: HubCA, tmp_path: Path
) -> None:
    hub = served_tls.hub
    first = Running(AgentSession(_tls(tmp_path, served_tls, hub_ca), runtime=FakeRuntime()))
    await eventually(lambda: first.session.connected, "the first agent connected")
    await first.stop()

    settings = _settings(tmp_path, served_tls.port, token="", insecure=False)  # the pinned CA from the state dir
    again = Running(AgentSession(settings, runtime=FakeRuntime()))
    await eventually(lambda: len(hub.streamed_with) == 2, "the restarted agent connected")
    await again.stop()
    assert len(hub.joins) == 1
    assert hub.streamed_with == [hub.issued[0]] * 2


async def test_the_certificate_is_renewed_on_the_live_stream(
    hub_ca: HubCA, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    served = Served(FakeHub(hub_ca, tls=True, lifetime=timedelta(seconds=3)))
    await served.start()
    try:
        hub = served.hub
        agent = Running(AgentSession(_tls(tmp_path, served, hub_ca), runtime=FakeRuntime()))
        await eventually(lambda: len(hub.issued) >= 2, "a renewed certificate")
        store = IdentityStore(tmp_path)
        await eventually(lambda: (i := store.load()) is not None and i.serial == hub.issued[1], "it on disk")
        assert agent.session.connected and len(hub.connections) == 1  # the stream stayed up
        await agent.stop()
    finally:
        await served.stop()
    renewal = hub.received("renew")[0]
    assert renewal.seq == 0
    assert pki.cert_node_id(hub_ca.sign_node(renewal.renew.csr_pem, "x")) == "x"  # a well-formed CSR
    assert "renewing the node certificate" in caplog.text
    assert f"node certificate renewed: serial {hub.issued[1]}" in caplog.text
    assert hub.streamed_with == hub.issued[:1]  # the new certificate is for the next connection
    first, second = (pki.load_cert(pem).public_key() for pem in hub.certificates[:2])
    assert pki.key_fingerprint(first) != pki.key_fingerprint(second)  # with a new key


async def test_a_renewal_without_answer_is_asked_again(
    hub_ca: HubCA, tmp_path: Path, quick_renewal_retry: None, caplog: pytest.LogCaptureFixture
) -> None:
    served = Served(FakeHub(hub_ca, tls=True, lifetime=timedelta(seconds=2), answer_renewals=False))
    await served.start()
    try:
        agent = Running(AgentSession(_tls(tmp_path, served, hub_ca), runtime=FakeRuntime()))
        await eventually(lambda: len(served.hub.received("renew")) >= 2, "a second renewal request")
        await agent.stop()
    finally:
        await served.stop()
    assert "no new certificate from the hub within" in caplog.text
    identity = IdentityStore(tmp_path).load()
    assert identity is not None and identity.serial == served.hub.issued[0]  # unchanged


async def test_a_refused_certificate_is_replaced_with_a_new_join_token(
    served_tls: Served, hub_ca: HubCA, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    hub = served_tls.hub
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN)
    settings = _tls(tmp_path / "state", served_tls, hub_ca, token_file=token_file)
    agent = Running(AgentSession(settings, runtime=FakeRuntime()))
    await eventually(lambda: agent.session.connected, "connected")

    hub.revoked.add(hub.issued[0])  # as when an operator issues a new join token
    hub.join_tokens["node-1"] = new_token = "f6e5d4c3b2a1.the-new-one"
    await served_tls.stop()  # the hub closes the stream; the revoked certificate is refused from now on
    await served_tls.start()
    await eventually(lambda: "hub refused node node-1's certificate" in caplog.text, "the refusal")
    assert "give the agent a new join token (the one it has was used already)" in caplog.text
    token_file.write_text(new_token + "\n")  # no restart: the agent reads its token file again
    await eventually(lambda: len(hub.streamed_with) == 2, "back with a new certificate")
    await agent.stop()
    assert [j.token for j in hub.joins] == [TOKEN, new_token]
    assert hub.streamed_with == [hub.issued[0], hub.issued[1]]
    assert TOKEN not in caplog.text and new_token not in caplog.text


async def test_a_wrong_ca_is_a_clear_error(served_tls: Served, other_ca: HubCA, tmp_path: Path) -> None:
    session = AgentSession(_tls(tmp_path, served_tls, other_ca, once=True), runtime=FakeRuntime())
    with pytest.raises(HubRefused, match=r"cannot verify the TLS certificate of hub 127\.0\.0\.1:\d+ with the CA in "):
        await asyncio.wait_for(session.run(), WAIT)
    assert served_tls.hub.joins == []  # the token never went to a hub the agent could not verify


async def test_tls_to_a_plaintext_hub_says_so(served: Served, hub_ca: HubCA, tmp_path: Path) -> None:
    session = AgentSession(_tls(tmp_path, served, hub_ca, once=True), runtime=FakeRuntime())
    with pytest.raises(HubRefused, match=r"does not speak TLS .*--insecure"):
        await asyncio.wait_for(session.run(), WAIT)


async def test_a_refused_join_token_is_a_clear_error(served_tls: Served, hub_ca: HubCA, tmp_path: Path) -> None:
    session = AgentSession(_tls(tmp_path, served_tls, hub_ca, once=True, token="a1b2c3d4e5f6.wrong"),
                           runtime=FakeRuntime())
    with pytest.raises(HubRefused, match="hub refused the join token for node node-1: invalid or expired join token"):
        await asyncio.wait_for(session.run(), WAIT)
    assert not IdentityStore(tmp_path).has_certificate()


async def test_a_lost_certificate_with_a_used_token_asks_for_a_new_token(
    served_tls: Served, hub_ca: HubCA, tmp_path: Path
) -> None:
    first = AgentSession(_tls(tmp_path, served_tls, hub_ca, once=True), runtime=FakeRuntime())
    await asyncio.wait_for(first.run(), WAIT)
    IdentityStore(tmp_path).cert_path.unlink()
    again = AgentSession(_tls(tmp_path, served_tls, hub_ca, once=True), runtime=FakeRuntime())
    with pytest.raises(HubRefused, match=r"needs a new join token \(the join token it has was used already\)"):
        await asyncio.wait_for(again.run(), WAIT)
    assert len(served_tls.hub.joins) == 1


async def test_a_hub_older_than_node_certificates_is_named(tmp_path: Path) -> None:
    server = grpc.aio.server()
    pb_grpc.add_AgentServiceServicer_to_server(pb_grpc.AgentServiceServicer(), server)  # no Endpoints, no Join
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        session = AgentSession(_settings(tmp_path, port, once=True), runtime=FakeRuntime())
        with pytest.raises(HubUnavailable, match=r"does not serve AgentService\.Endpoints: it is older than this"):
            await asyncio.wait_for(session.run(), WAIT)
    finally:
        await server.stop(None)
