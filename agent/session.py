"""The agent's session with the hub: one long-lived `AgentService.Connect` stream, reconnected forever.

    session = AgentSession(settings)
    loop.add_signal_handler(signal.SIGTERM, session.close)
    await session.run()          # returns after close(); raises only in burst (`once`) mode

Timeouts use `asyncio.timeout`, never `asyncio.wait_for`: before Python 3.12
`wait_for` swallows a cancel that arrives as its awaitable completes (a stop
during the Welcome left the session streaming, its stop hanging).

One connection:

0. `Endpoints` on the hub's main address, and `Join` when the node has no
   usable certificate (see `agent.hublink`); the stream opens with mTLS (or,
   on an `--insecure` hub, in plaintext with the certificate proven in Hello);
1. `Hello` (node id, version, capabilities, inventory, previous session id,
   last hub command seq seen, first unacked event seq);
2. the hub's `Welcome`: its intervals are applied, outbox events below
   `resume_from_seq` are dropped (the hub has them) and the event counter is
   moved past it; the rest of the outbox is sent again, in seq order;
3. then, concurrently: heartbeats, metrics batches, outbox events as they are
   added, and a receive loop (cumulative acks → outbox; commands → executed at
   most once per id, each answered with a `CommandAck` event); and, once the
   node's certificate is two thirds through its life, a `RenewCertificate`
   with a new key's CSR: the hub's `Certificate` answer is stored (key first)
   and used from the next connection; without an answer the agent asks again.

Pipelines and instances (`agent.pipeline.engine`, `agent.instances`): the
session registers the run_pipeline, cancel_run and container_action commands,
resumes unfinished runs when it starts, sends a full instance report on every
connect, and stops both (runs stay resumable) when it stops. In burst mode
runs are not resumed and containers are not watched.

When the stream ends or fails the session backs off (full jitter, capped) and
reconnects with `previous_session_id`. Metrics and heartbeats are volatile:
nothing is collected or queued while disconnected. A certificate or join token
the hub refuses (UNAUTHENTICATED, PERMISSION_DENIED), or a hub whose TLS
certificate the pinned CA does not vouch for, is logged as an error and
retried, since an operator may fix it (e.g. write a new join token to the
`--token @FILE`); in burst mode it is an error.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Coroutine, Sequence
from datetime import UTC, datetime
from typing import Any

import grpc  # type: ignore[import-untyped, unused-ignore]
from google.protobuf.json_format import MessageToDict

from agent import __version__, pki
from agent.backoff import Backoff
from agent.collect.gpu import GpuCollector
from agent.collect.inventory import inventory
from agent.collect.metrics import MetricsCollector
from agent.commands import CommandExecutor, CommandHandler
from agent.errors import ConfigError, HubRefused, HubUnavailable, StateError
from agent.hublink import CHANNEL_OPTIONS, HubLink
from agent.identity import Identity
from agent.instances import InstanceWatcher
from agent.log import node_logger
from agent.outbox import EventBody, Outbox
from agent.pipeline.engine import PipelineRunner
from agent.pipeline.ports import PortAllocator
from agent.runtime.docker import DockerRuntime
from agent.settings import AgentSettings
from agent.state import CommandOutcome, StateStore
from proto import gamenode_pb2 as pb
from proto import gamenode_pb2_grpc as pb_grpc

__all__ = ["CHANNEL_OPTIONS", "MIN_INTERVAL", "AgentSession"]

MIN_INTERVAL = 0.05
"""Seconds: the shortest heartbeat or metrics interval the agent accepts from a hub."""
MAX_BATCH = 60
"""Most metrics samples in one `MetricsBatch`."""
RENEW_RETRY_MIN = 5.0
RENEW_RETRY_MAX = 600.0
"""Seconds to wait for the hub's new certificate before asking again: a tenth of the time left, within these."""


class AgentSession:
    """A node's connection to its hub: `run()` until `close()`."""

    def __init__(
        self,
        settings: AgentSettings,
        *,
        runtime: DockerRuntime | None = None,
        gpu: GpuCollector | None = None,
        collector: MetricsCollector | None = None,
        backoff: Backoff | None = None,
    ) -> None:
        self.settings = settings
        self.log = node_logger("agent.session", settings.node_id)
        self.link = HubLink(settings, self.log)
        """Endpoints, Join, the stream's channel and the node's identity."""
        self.store = StateStore(settings.state_dir)
        self.outbox = Outbox(self.store, settings.outbox_limit, self.log)
        self.commands = CommandExecutor(self.store, self.log)
        self.runtime = runtime if runtime is not None else DockerRuntime()
        self.ports = PortAllocator(settings.state_dir, settings.port_range)
        self.runner = PipelineRunner(self, settings, self.runtime, self.ports)
        self.instances = InstanceWatcher(self, self.runtime, ports=self.ports, log=self.log,
                                         secrets=self.runner.secrets)
        self.gpu = gpu if gpu is not None else GpuCollector()
        self._collector = collector
        self.backoff = backoff or Backoff(settings.backoff_base, settings.backoff_cap)
        self.heartbeat_interval = settings.heartbeat_interval
        self.metrics_interval = settings.metrics_interval
        self.session_id = ""
        """The hub's id for the current (or last) connection."""
        self.connected = False
        """True from the Welcome until the stream ends."""
        self._stop = asyncio.Event()
        self._wake = asyncio.Event()
        """Set when the outbox changed (an event added or acked)."""
        self._reconfigured = asyncio.Event()
        self._write_lock = asyncio.Lock()
        self._in_flight: asyncio.Future[None] | None = None
        self._instances = 0
        self._welcomed = False
        self._renewing: dict[str, pki.PrivateKey] = {}
        """The new keys of renewal requests the hub has not answered yet, by public key fingerprint."""
        self._renewed = asyncio.Event()
        self.commands.register("ping", self._on_ping)
        self.commands.register("config_update", self._on_config_update)
        self.commands.register("run_pipeline", self._on_run_pipeline)
        self.commands.register("cancel_run", self._on_cancel_run)
        self.commands.register("container_action", self._on_container_action)

    # --- public API ------------------------------------------------------------

    def emit_pipeline_event(self, event: pb.PipelineEvent) -> int:
        """Queue a pipeline event (persisted until acked); returns its seq."""
        return self._enqueue(event)

    def emit_log(self, chunk: pb.LogChunk) -> int:
        """Queue log lines (kept in memory until acked; dropped first when the outbox is full)."""
        return self._enqueue(chunk)

    def emit_instance_report(self, report: pb.InstanceReport) -> int:
        return self._enqueue(report)

    def register_command(self, action: str, handler: CommandHandler) -> None:
        """Handle hub commands of `action` ("run_pipeline", ...); see `agent.commands`."""
        self.commands.register(action, handler)

    def close(self) -> None:
        """Ask `run()` to stop (idempotent; safe from a signal handler)."""
        self._stop.set()

    async def run(self) -> None:
        """Connect and stay connected until `close()`; in burst mode connect once and raise on failure."""
        self.log.info("gamenode agent %s: hub %s, state dir %s%s", __version__, self.settings.target,
                      self.settings.state_dir, " (burst mode)" if self.settings.once else "")
        watcher = None if self.settings.once else asyncio.create_task(self.instances.run(), name="instances")
        try:
            if not self.settings.once:
                self.runner.resume_unfinished()
            await self._until_stopped(self._connect_once() if self.settings.once else self._reconnect_forever())
        finally:
            await self._stop_work(watcher)
            self._shutdown()

    # --- connection lifecycle --------------------------------------------------

    async def _until_stopped(self, coro: Coroutine[Any, Any, None]) -> None:
        work = asyncio.ensure_future(coro)
        stop = asyncio.ensure_future(self._stop.wait())
        try:
            await asyncio.wait({work, stop}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (work, stop):
                task.cancel()
            await asyncio.gather(work, stop, return_exceptions=True)
        error = None if work.cancelled() else work.exception()
        if error is not None:
            raise error

    async def _reconnect_forever(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            started = loop.time()
            try:
                await self._connection(once=False)
                reason = "the hub closed the stream"
            except (HubRefused, ConfigError, StateError) as exc:  # an operator may fix it (a token, the CA file)
                reason = exc.message
                self.log.error("%s; retrying", exc.message)
            except HubUnavailable as exc:
                reason = exc.message
            except Exception as exc:  # a bug must not end the daemon: log it, back off, reconnect
                reason = f"unexpected {type(exc).__name__}: {exc}"
                self.log.exception("the session failed unexpectedly")
            if loop.time() - started > self.settings.stable_after:
                self.backoff.reset()  # (a Welcome resets it too: see _on_welcome)
            delay = self.backoff.next_delay()
            self.log.warning("%s (%s); reconnecting in %.2f s (attempt %d)",
                             "disconnected" if self._welcomed else "cannot connect", reason, delay,
                             self.backoff.attempt)
            await asyncio.sleep(delay)

    async def _connect_once(self) -> None:
        await self._connection(once=True)
        self.log.info("burst done (%d events unacked)", len(self.outbox))

    async def _connection(self, once: bool) -> None:
        """One stream, from Endpoints (and Join) and Hello to its end."""
        self._welcomed = False
        target = await self.link.open()
        channel = target.channel
        call = pb_grpc.AgentServiceStub(channel).Connect()  # type: ignore[no-untyped-call, unused-ignore]
        try:
            self._on_welcome(await self._handshake(call, None if target.mtls else target.identity), target.address)
            await (self._burst(call) if once else self._stream(call))
        except grpc.aio.AioRpcError as exc:
            raise self._rpc_error(exc.code(), exc.details()) from None
        except asyncio.InvalidStateError:  # a write after the RPC ended: its status says why
            raise self._rpc_error(await call.code(), await call.details()) from None
        except (OSError, grpc.aio.UsageError) as exc:
            raise HubUnavailable(f"stream failed: {exc}") from exc
        finally:
            self.connected = False
            await self._hang_up(call, channel)

    def _rpc_error(self, code: Any, details: str | None) -> HubRefused | HubUnavailable:
        details = details or ""
        if code == grpc.StatusCode.UNAUTHENTICATED:
            return self.link.stream_refused(details)
        return HubUnavailable(f"hub {self.settings.target}: {code.name}" + (f": {details}" if details else ""))

    async def _hang_up(self, call: Any, channel: Any) -> None:
        call.cancel()  # a no-op after a clean end
        await channel.close()

    async def _handshake(self, call: Any, prove: Identity | None) -> pb.Welcome:
        hello = await self._hello()
        if prove is not None:
            hello.MergeFrom(pb.Hello(**self.link.hello_proof(prove)))
        await call.write(pb.AgentMessage(hello=hello))
        try:
            async with asyncio.timeout(self.settings.welcome_timeout):
                reply = await call.read()
        except TimeoutError:
            raise HubUnavailable(f"no Welcome within {self.settings.welcome_timeout:g} s") from None
        if reply is grpc.aio.EOF:
            raise HubUnavailable("the hub closed the stream before its Welcome")
        if reply.WhichOneof("body") != "welcome":
            raise HubUnavailable(f"the hub answered Hello with {reply.WhichOneof('body')} instead of Welcome")
        welcome: pb.Welcome = reply.welcome
        return welcome

    async def _hello(self) -> pb.Hello:
        inv = await asyncio.to_thread(inventory, self.gpu, self.settings.hub_host)
        docker = await asyncio.to_thread(self.runtime.count_instances)
        capabilities = ["heartbeat", "metrics", "pipeline"]
        capabilities += ["nvml"] if self.gpu.available else []
        capabilities += ["docker"] if docker is not None else []
        state = self.store.state
        return pb.Hello(
            node_id=self.settings.node_id,
            agent_version=__version__,
            capabilities=capabilities,
            inventory=inv,
            previous_session_id=state.session_id,
            last_command_seq=state.last_command_seq,
            first_unacked_seq=self.outbox.first_unacked_seq(),
        )

    def _on_welcome(self, welcome: pb.Welcome, address: str) -> None:
        self.session_id = welcome.session_id
        self.store.state.session_id = welcome.session_id
        self.store.save()
        self._set_intervals(welcome.heartbeat_interval_ms, welcome.metrics_interval_ms)
        if welcome.resume_from_seq:
            self.outbox.ack(welcome.resume_from_seq - 1)
            self.outbox.advance_to(welcome.resume_from_seq)
        self.connected = True
        self._welcomed = True
        self.instances.report_now()
        self.backoff.reset()
        self.log.info("connected: session %s (%s) on %s, heartbeat %g s, metrics %g s, resending %d events",
                      welcome.session_id or "-", "resumed" if welcome.resumed else "new", address,
                      self.heartbeat_interval, self.metrics_interval, len(self.outbox))

    async def _stop_work(self, watcher: asyncio.Task[None] | None) -> None:
        """Stop following containers and stop the runs (they resume when the agent starts again)."""
        if watcher is not None:
            watcher.cancel()
            await asyncio.gather(watcher, return_exceptions=True)
        await self.runner.close()

    def _shutdown(self) -> None:
        self.outbox.checkpoint()
        self.runtime.close()
        self.gpu.close()
        self.log.info("agent stopped (%d events unacked)", len(self.outbox))

    # --- the stream ------------------------------------------------------------

    async def _stream(self, call: Any) -> None:
        await self._converse(call, self._send_events(call), self._heartbeats(call), self._metrics(call),
                             self._renewals(call))

    async def _burst(self, call: Any) -> None:
        """Burst mode: one heartbeat, one metrics sample, the outbox until acked."""
        await self._converse(call, self._report_once(call))

    async def _converse(self, call: Any, *writers: Coroutine[Any, Any, None]) -> None:
        """Read (acks, commands) while `writers` write, until one of them ends; then wind down politely.

        grpc.aio cancels the whole RPC when a pending `read()` or `write()` is
        cancelled, so on the way out the writers' writes are let finish and the
        reader is never cancelled while the hub may still end the stream
        cleanly: half-close, then read to the hub's EOF (at most `close_grace`).
        """
        reader = asyncio.create_task(self._receive(call))
        tasks = [asyncio.ensure_future(w) for w in writers]
        try:
            await _first_done(reader, *tasks)
        finally:
            await self._wind_down(call, reader, tasks)

    async def _wind_down(self, call: Any, reader: asyncio.Task[None], writers: Sequence[asyncio.Future[None]]) -> None:
        for task in writers:
            task.cancel()
        await asyncio.gather(*writers, return_exceptions=True)
        if not reader.done():
            with contextlib.suppress(Exception):
                async with asyncio.timeout(self.settings.close_grace):
                    await self._half_close(call, reader)
            reader.cancel()
        await asyncio.gather(reader, return_exceptions=True)

    async def _half_close(self, call: Any, reader: asyncio.Task[None]) -> None:
        if self._in_flight is not None:
            await self._in_flight
        await call.done_writing()
        await asyncio.wait({reader})

    async def _report_once(self, call: Any) -> None:
        await self._send_heartbeat(call)
        await self._write(call, pb.AgentMessage(metrics=pb.MetricsBatch(samples=[await self._sample()])))
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.settings.once_ack_timeout
        cursor = 0
        while True:
            self._wake.clear()
            cursor = await self._send_pending(call, cursor)
            if not len(self.outbox):
                return
            if loop.time() >= deadline:
                raise HubUnavailable(f"the hub did not ack {len(self.outbox)} events within "
                                     f"{self.settings.once_ack_timeout:g} s")
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(deadline - loop.time()):
                    await self._wake.wait()

    async def _receive(self, call: Any) -> None:
        while True:
            message = await call.read()
            if message is grpc.aio.EOF:
                raise HubUnavailable("the hub closed the stream")
            kind = message.WhichOneof("body")
            if kind == "ack":
                self.outbox.ack(message.ack.up_to_seq)
                self._wake.set()
            elif kind == "command":
                ack = await self.commands.execute(message.seq, message.command)
                if ack is not None:
                    self._enqueue(ack)
            elif kind == "certificate":
                self._on_certificate(message.certificate.certificate_pem)
            else:
                self.log.warning("ignoring an unexpected %s from the hub", kind)

    async def _send_events(self, call: Any) -> None:
        cursor = 0
        while True:
            self._wake.clear()
            cursor = await self._send_pending(call, cursor)
            await self._wake.wait()

    async def _send_pending(self, call: Any, cursor: int) -> int:
        for message in self.outbox.pending(cursor):
            await self._write(call, message)
            cursor = message.seq + 1
        return cursor

    async def _heartbeats(self, call: Any) -> None:
        while True:
            await self._send_heartbeat(call)
            await self._pause(self.heartbeat_interval)

    async def _send_heartbeat(self, call: Any) -> None:
        count = await asyncio.to_thread(self.runtime.count_instances)
        self._instances = count or 0
        heartbeat = pb.Heartbeat(instances=self._instances, runtime=self.runtime.status)
        heartbeat.sent_at.GetCurrentTime()
        await self._write(call, pb.AgentMessage(heartbeat=heartbeat))

    async def _metrics(self, call: Any) -> None:
        batch: list[pb.MetricsSample] = []
        while True:
            batch.append(await self._sample())
            per_batch = max(1, min(MAX_BATCH, int(self.heartbeat_interval // self.metrics_interval)))
            if len(batch) >= per_batch:
                await self._write(call, pb.AgentMessage(metrics=pb.MetricsBatch(samples=batch)))
                batch = []
            await self._pause(self.metrics_interval)

    async def _sample(self) -> pb.MetricsSample:
        if self._collector is None:
            self._collector = await asyncio.to_thread(MetricsCollector, self.gpu)
        return await asyncio.to_thread(self._collector.sample, self._instances)

    async def _write(self, call: Any, message: pb.AgentMessage) -> None:
        """One write at a time (grpc.aio allows no more), shielded: cancelling a write would cancel the RPC."""
        async with self._write_lock:
            self._in_flight = asyncio.ensure_future(call.write(message))
            await asyncio.shield(self._in_flight)

    # --- certificate renewal -----------------------------------------------------

    async def _renewals(self, call: Any) -> None:
        """Ask for a new certificate (a new key's CSR) when the newest one is due; again when the hub is silent."""
        while True:
            identity = self.link.identity
            if identity is None:
                return
            wait = (identity.renew_due() - datetime.now(UTC)).total_seconds()
            if wait > 0:
                await asyncio.sleep(min(wait, 3600.0))  # then look again: a renewal may have replaced it
                continue
            key = pki.new_key()
            self._renewing[pki.key_fingerprint(key.public_key())] = key
            self._renewed.clear()
            csr = pki.make_csr(key, self.settings.node_id)
            await self._write(call, pb.AgentMessage(renew=pb.RenewCertificate(csr_pem=csr)))
            self.log.info("renewing the node certificate (%s): sent a new key's request", identity.describe())
            left = (identity.not_after - datetime.now(UTC)).total_seconds()
            patience = min(RENEW_RETRY_MAX, max(RENEW_RETRY_MIN, left / 10))
            try:
                async with asyncio.timeout(patience):
                    await self._renewed.wait()
            except TimeoutError:
                self.log.warning("no new certificate from the hub within %g s; asking again", patience)

    def _on_certificate(self, certificate_pem: bytes) -> None:
        """The hub's answer to a renewal: store it with its key (used from the next connection)."""
        try:
            cert = pki.load_cert(certificate_pem, "the hub's renewed certificate")
            key = self._renewing.pop(pki.key_fingerprint(cert.public_key()), None)
            if key is None:
                self.log.warning("ignoring a certificate for a key the agent did not send")
                return
            identity = self.link.identities.save(key, certificate_pem, self.settings.node_id)
        except (pki.PkiError, StateError) as exc:
            self.log.error("the hub's renewed certificate cannot be used (%s); asking again later", exc.args[0])
            return
        self._renewing.clear()
        self.link.identity = identity
        self._renewed.set()
        self.log.info("node certificate renewed: %s (used from the next connection)", identity.describe())

    async def _pause(self, seconds: float) -> None:
        """Sleep, cut short when a ConfigUpdate changes the intervals."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                await self._reconfigured.wait()

    # --- outbox and commands ---------------------------------------------------

    def _enqueue(self, body: EventBody) -> int:
        seq = self.outbox.add(body)
        self._wake.set()
        return seq

    def _set_intervals(self, heartbeat_ms: int, metrics_ms: int) -> None:
        if heartbeat_ms:
            self.heartbeat_interval = max(MIN_INTERVAL, heartbeat_ms / 1000)
        if metrics_ms:
            self.metrics_interval = max(MIN_INTERVAL, metrics_ms / 1000)
        previous, self._reconfigured = self._reconfigured, asyncio.Event()
        previous.set()

    async def _on_ping(self, command: pb.Command) -> CommandOutcome:
        return CommandOutcome(True)

    async def _on_run_pipeline(self, command: pb.Command) -> CommandOutcome:
        """Accept the run (persisted) and return: its progress goes out as events."""
        run = command.run_pipeline
        params: dict[str, Any] = MessageToDict(run.params)
        return self.runner.start(run.run_id, run.pipeline_yaml, params, run.instance_id)

    async def _on_cancel_run(self, command: pb.Command) -> CommandOutcome:
        return self.runner.cancel(command.cancel_run.run_id, command.cancel_run.reason)

    async def _on_container_action(self, command: pb.Command) -> CommandOutcome:
        return await self.instances.container_action(command.container_action)

    async def _on_config_update(self, command: pb.Command) -> CommandOutcome:
        update = command.config_update
        self._set_intervals(update.heartbeat_interval_ms, update.metrics_interval_ms)
        if update.settings:
            self.log.info("config update: settings %s not used by this agent", sorted(update.settings))
        self.log.info("config update: heartbeat %g s, metrics %g s", self.heartbeat_interval, self.metrics_interval)
        return CommandOutcome(True)


async def _first_done(*tasks: asyncio.Future[None]) -> None:
    """Wait until one of `tasks` ends and re-raise its exception (the others keep running)."""
    done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    for task in done:
        error = None if task.cancelled() else task.exception()
        if error is not None:
            raise error
