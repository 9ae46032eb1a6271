"""`AgentService.Connect`: the hub's end of each agent's stream.

    agent                                   hub
    Hello{node_id, credential, ...}  ──►    verify (constant time) or UNAUTHENTICATED
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

The first message must be `hello` (else INVALID_ARGUMENT). A stream the hub
closes ends with a status saying why: ABORTED (replaced by a newer stream of
the same node), UNAVAILABLE (no heartbeat for three intervals, or the hub is
stopping), UNAUTHENTICATED (credential rotated or revoked), NOT_FOUND (node
deleted).
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import grpc
from grpc import aio

from console.hub.live import LiveState
from console.hub.run_bridge import RunBridge
from console.hub.sessions import ACK, CLOSE, Session, SessionRegistry
from console.service import CredentialService
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
        runs: RunBridge | None = None, logs: LogService | None = None,
    ) -> None:
        self.registry = registry
        self.live = live
        self.credentials = credentials
        self.runs = runs
        """Applies pipeline events and container reports; None: kept in `live` only."""
        self.logs = logs
        """Stores log chunks; None: kept in `live` only."""

    async def Connect(self, request_iterator: Any, context: Context) -> None:
        hello = await self._hello(context)
        credential = self.credentials.verify(hello.node_id, hello.credential)
        if credential is None:
            log.warning("refused agent stream for node %r from %s: invalid credential", hello.node_id, context.peer())
            await context.abort(grpc.StatusCode.UNAUTHENTICATED, f"invalid credential for node {hello.node_id}")
        session, welcome = self.registry.attach(hello, context.peer(), credential)
        session.task = asyncio.current_task()
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
        if first is aio.EOF:  # type: ignore[comparison-overlap]  # read() may answer EOF
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "the stream ended before its hello")
        if first.WhichOneof("body") != "hello":
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "the first message must be hello")
        return first.hello

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
        try:
            while True:
                message = await context.read()
                if message is aio.EOF:  # type: ignore[comparison-overlap]
                    session.close(None, "the agent closed its stream")
                    return
                self._dispatch(session, message)
        except _ProtocolError as exc:
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
        elif kind == "hello":
            raise _ProtocolError("hello sent twice on one stream")
        else:  # a newer agent's message this hub does not know
            session.log.debug("ignoring a message of an unknown kind")

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
