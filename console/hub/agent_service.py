"""`AgentService`: the hub's end of each agent's stream, and how an agent gets to open one.

`Endpoints` (main port) says where agents stream (`agent_port`, mTLS or not);
`Join` (main port) exchanges a node's single-use join token and a CSR for its
client certificate (`CredentialService.enroll`). `Connect` is the stream:

    agent                                   hub
    Hello{node_id, ...}              ──►    the stream's client certificate (mTLS: the TLS peer's; on an
                                            --insecure hub: Hello.certificate_pem + a proof by its key) is
                                            the node's current or previous one, CN = node_id; else
                                            UNAUTHENTICATED
                                     ◄──    Welcome{session_id, resumed, intervals, resume_from_seq}
                                     ◄──    pending commands, resent in seq order
    heartbeat / metrics (seq 0)      ──►    last seen, live state (memory only)
    inventory                        ──►    merged into hardware/network, written if changed
    reliable events (seq > 0)        ──►    duplicates (seq <= last handled) dropped, the rest handled:
                                            pipeline events → runs, container reports → instances (both
                                            written on the run bridge's writer thread), log chunks → logs;
                                     ◄──    EventAck{up_to_seq} (cumulative, coalesced; sent only when no
                                            event's write is still in flight, so nothing acked is lost)
                                     ◄──    Command{command_id} with HubMessage.seq
    CommandAck                       ──►    resolves the command's future
    renew{csr_pem} (seq 0)           ──►    a new certificate, current from now on (the one in use stays
                                     ◄──    accepted until the node connects with the new one):
                                            certificate{certificate_pem}

The first message must be `hello` (else INVALID_ARGUMENT). A stream the hub
closes ends with a status saying why: ABORTED (replaced by a newer stream of
the same node), UNAVAILABLE (no heartbeat for three intervals, or the hub is
stopping), UNAUTHENTICATED (credential rotated or revoked), NOT_FOUND (node
deleted). Joins, renewals and refused streams are logged (with the peer,
never a token or key) and joins and renewals audited.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import grpc
from google.protobuf.message import DecodeError
from grpc import aio

from agent.pki import PkiError, load_cert, verify_proof
from console.errors import GamenodeError, InvalidInput, Unauthorized
from console.hub.errors import grpc_status
from console.hub.limits import TokenBucket, check_message, pace
from console.hub.live import LiveState
from console.hub.run_bridge import RunBridge
from console.hub.sessions import ACK, CLOSE, Session, SessionRegistry
from console.service import CredentialService
from console.service.audit import AuditLog
from console.service.credentials import EnrolledElsewhere
from console.service.logs import LogService
from proto import gamenode_pb2 as pb
from proto import gamenode_pb2_grpc as pb_grpc

__all__ = ["HELLO_TIMEOUT", "AgentServicer"]

log = logging.getLogger(__name__)

HELLO_TIMEOUT = 30.0
"""Seconds a new stream has to send its Hello."""

Context = aio.ServicerContext[pb.AgentMessage, pb.HubMessage]


class _ProtocolError(Exception):
    """The agent broke the wire contract; its stream ends with INVALID_ARGUMENT."""


class AgentServicer(pb_grpc.AgentServiceServicer):
    def __init__(
        self, registry: SessionRegistry, live: LiveState, credentials: CredentialService,
        runs: RunBridge | None = None, logs: LogService | None = None, *, insecure: bool = False,
        agent_port: int = 0, version: str = "", audit: AuditLog | None = None,
    ) -> None:
        self.registry = registry
        self.live = live
        self.credentials = credentials
        self.runs = runs
        """Applies pipeline events and container reports; None: kept in `live` only."""
        self.logs = logs
        """Stores log chunks; None: kept in `live` only."""
        self.insecure = insecure
        """No TLS anywhere: a Hello proves its certificate's key by a signature (`agent.pki.sign_proof`)."""
        self.agent_port = agent_port
        """The mTLS port agents stream on (`Endpoints`, `Join`); 0: the port they dialled (--insecure)."""
        self.version = version
        self.audit = audit
        self._tasks: set[asyncio.Task[None]] = set()

    async def Endpoints(self, request: pb.EndpointsRequest, context: aio.ServicerContext[Any, Any]
                        ) -> pb.EndpointsResponse:
        return pb.EndpointsResponse(agent_port=self.agent_port, mtls=not self.insecure, hub_version=self.version)

    async def Join(self, request: pb.JoinRequest, context: aio.ServicerContext[Any, Any]) -> pb.JoinResponse:
        """A node's certificate for its join token and CSR; every refusal logged (never the token)."""
        node_id = request.node_id
        try:
            pem = await asyncio.to_thread(self.credentials.enroll, node_id, request.token, request.csr_pem)
        except GamenodeError as exc:
            code = grpc.StatusCode.PERMISSION_DENIED if isinstance(exc, EnrolledElsewhere) else grpc_status(exc)
            log.warning("refused join of node %r from %s: %s", node_id, context.peer(), exc.message)
            await self._audit(node_id, "AgentService.Join", code, exc.message)
            await context.abort(code, exc.message)
        log.info("node %r joined from %s", node_id, context.peer())
        await self._audit(node_id, "AgentService.Join", grpc.StatusCode.OK)
        ca = self.credentials.ca
        assert ca is not None  # enroll signed with it
        return pb.JoinResponse(certificate_pem=pem, ca_pem=ca.ca_pem, agent_port=self.agent_port,
                               mtls=not self.insecure)

    async def Connect(self, request_iterator: Any, context: Context) -> None:
        hello = await self._hello(context)
        serial = await self._identify(hello, context)
        session, welcome = self.registry.attach(hello, context.peer(), serial)
        session.task = asyncio.current_task()
        if self.credentials.replaces_previous(hello.node_id, serial):  # after attach: an older stream ends ABORTED
            await asyncio.to_thread(self.credentials.confirm, hello.node_id, serial)
        try:
            await context.write(pb.HubMessage(welcome=welcome))
            reader = asyncio.create_task(self._read(session, context))
            try:
                await self._write(session, context)
            finally:
                reader.cancel()
        finally:
            self.registry.detach(session)
        if session.close_code is not None:
            await context.abort(session.close_code, session.close_reason)

    async def _hello(self, context: Context) -> pb.Hello:
        try:
            first = await asyncio.wait_for(context.read(), HELLO_TIMEOUT)
        except TimeoutError:
            await context.abort(grpc.StatusCode.DEADLINE_EXCEEDED, f"no hello within {HELLO_TIMEOUT:g} s")
        except DecodeError as exc:  # not protobuf: a status, not an error with a traceback in the hub's log
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"the first message: {exc}")
        if first is aio.EOF:  # type: ignore[comparison-overlap]  # read() may answer EOF
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "the stream ended before its hello")
        if first.WhichOneof("body") != "hello":
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "the first message must be hello")
        return first.hello

    async def _identify(self, hello: pb.Hello, context: Context) -> str:
        """The serial of the node certificate the stream holds for `hello.node_id`; else the stream ends
        UNAUTHENTICATED (and a warning with the peer says why)."""
        try:
            return self.credentials.check(hello.node_id, self._certificate(hello, context)).serial
        except GamenodeError as exc:
            log.warning("refused agent stream for node %r from %s: %s", hello.node_id, context.peer(), exc.message)
            await context.abort(grpc.StatusCode.UNAUTHENTICATED, exc.message)
            raise  # not reached: abort raises

    def _certificate(self, hello: pb.Hello, context: Context) -> bytes:
        """The PEM certificate the stream proves it holds the key of: the mTLS peer's, or (--insecure) the
        Hello's, signed over by its key."""
        node_id = hello.node_id
        peer = list(context.auth_context().get("x509_pem_cert", ()))
        if peer:
            return bytes(peer[0])
        if not self.insecure:
            raise Unauthorized(f"node {node_id}: no client certificate; agents stream on the hub's agent port "
                               "with mTLS (AgentService.Endpoints names it)")
        if not hello.certificate_pem or not hello.proof:
            old = " (an agent from before node certificates: upgrade it)" if hello.credential else ""
            raise Unauthorized(f"node {node_id}: the hello carries no certificate and proof{old}")
        try:
            cert = load_cert(hello.certificate_pem, "hello.certificate_pem")
        except PkiError as exc:
            raise Unauthorized(f"node {node_id}: {exc}") from None
        why = verify_proof(cert, node_id, hello.proof_time_ms, hello.proof)
        if why is not None:
            raise Unauthorized(f"node {node_id}: {why}")
        return hello.certificate_pem

    async def _write(self, session: Session, context: Context) -> None:
        outbox = session.outbox
        try:
            while True:
                item = await outbox.get()
                if item is CLOSE:
                    return
                message = session.ack_message() if item is ACK else item
                assert isinstance(message, pb.HubMessage)
                await context.write(message)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # the agent is gone: nothing more can be sent
            session.log.debug("stream write failed: %r", exc)
            session.close(None, "agent disconnected")

    async def _read(self, session: Session, context: Context) -> None:
        bucket = TokenBucket.for_stream(self.registry.settings)
        try:
            while True:
                message = await context.read()
                if message is aio.EOF:  # type: ignore[comparison-overlap]
                    session.close(None, "the agent closed its stream")
                    return
                self._dispatch(session, message)
                await pace(bucket, session.log)  # over the stream's rate: read on later (back-pressure)
        except (_ProtocolError, DecodeError) as exc:
            session.log.warning("protocol error: %s", exc)
            session.close(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # the stream broke under us (agent gone, call cancelled)
            session.log.debug("stream read failed: %r", exc)
            session.close(None, "agent disconnected")

    def _dispatch(self, session: Session, message: pb.AgentMessage) -> None:
        """One agent message; the hot path (heartbeat, metrics) writes nothing to disk."""
        session.last_seen = self.registry.clock()
        if (problem := check_message(message)) is not None:
            raise _ProtocolError(problem)
        kind = message.WhichOneof("body")
        if kind == "heartbeat":
            beat = message.heartbeat
            self.live.heartbeat(session.node_id, beat.instances, beat.runtime)
        elif kind == "metrics":
            self.live.add_samples(session.node_id, message.metrics.samples, time.time())
        elif kind == "inventory":
            self.registry.inventory(session, message.inventory)
        elif kind in ("command_ack", "pipeline_event", "log_chunk", "instance_report"):
            self._reliable(session, kind, message)
        elif kind == "renew":
            self._renew(session, message.renew.csr_pem)
        elif kind == "hello":
            raise _ProtocolError("hello sent twice on one stream")
        else:  # a newer agent's message this hub does not know
            session.log.debug("ignoring a message of an unknown kind")

    def _renew(self, session: Session, csr_pem: bytes) -> None:
        """Sign a new certificate off the loop; answer it on the stream."""
        task = asyncio.create_task(self._renewed(session, csr_pem))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _renewed(self, session: Session, csr_pem: bytes) -> None:
        node_id = session.node_id
        try:
            pem = await asyncio.to_thread(self.credentials.renew, node_id, csr_pem, session.serial)
        except GamenodeError as exc:
            session.log.warning("certificate renewal refused: %s", exc.message)
            code = grpc_status(exc)
            await self._audit(node_id, "AgentService.Renew", code, exc.message)
            if isinstance(exc, InvalidInput):
                session.close(code, f"renew.{exc.message}")
            return
        session.log.info("certificate renewed")
        await self._audit(node_id, "AgentService.Renew", grpc.StatusCode.OK)
        session.send(pb.HubMessage(certificate=pb.Certificate(certificate_pem=pem)))

    async def _audit(self, node_id: str, action: str, code: grpc.StatusCode, detail: str | None = None) -> None:
        if self.audit is not None:
            await asyncio.to_thread(self.audit.record, actor=f"node:{node_id}", via="grpc", action=action,
                                    status=code.name, target=("node", node_id), detail=detail)

    def _reliable(self, session: Session, kind: str, message: pb.AgentMessage) -> None:
        seq = message.seq
        if seq == 0:
            session.log.warning("%s without a seq: handled, not acked", kind)
        elif not self.registry.accept_event(session, seq):
            _ack(session)  # a duplicate: acked again, not handled again
            return
        node_id = session.node_id
        written: asyncio.Future[Any] | None = None
        if kind == "command_ack":
            self.registry.command_acked(session, message.command_ack)
        elif kind == "pipeline_event":
            event = message.pipeline_event
            session.log.debug("pipeline event: run %s step %r state %d %d%% %s", event.run_id, event.step,
                              event.state, event.progress, event.message)
            self.live.add_pipeline_event(node_id, event)
            written = self.runs.apply_event(node_id, event) if self.runs is not None else None
        elif kind == "log_chunk":
            session.log.debug("log chunk: %s, %d line(s)", message.log_chunk.source, len(message.log_chunk.lines))
            self.live.add_log_chunk(node_id, message.log_chunk)
            if self.logs is not None:
                self.logs.append(node_id, message.log_chunk)
        else:
            report = message.instance_report
            session.log.debug("instance report: %d instance(s)", len(report.instances))
            self.live.add_instance_report(node_id, report)
            written = self.runs.apply_report(node_id, report) if self.runs is not None else None
        if written is not None:
            _ack_when_written(session, written)
        elif seq:
            _ack(session)


def _ack(session: Session) -> None:
    """Ack what was handled, unless a write is still in flight (its completion acks)."""
    if session.writes_in_flight == 0:
        session.request_ack()


def _ack_when_written(session: Session, written: asyncio.Future[Any]) -> None:
    session.writes_in_flight += 1

    def done(_: asyncio.Future[Any]) -> None:
        session.writes_in_flight -= 1
        _ack(session)

    written.add_done_callback(done)
