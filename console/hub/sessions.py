"""The agent session registry: which node is connected on which stream, and what it owes.

Per node the registry keeps, in memory and across that node's sessions:

- the live `Session` (at most one: a second stream for the node replaces the
  first, which is closed with ABORTED; the node does not flap offline);
- the last session id it handed out (a Hello naming it resumes: same id);
- the seq of the last reliable event handled (duplicates are dropped; a
  reconnecting agent is told to resume after it);
- the commands sent and not yet acked, resent in order on every reconnect
  (agents run each command id at most once), and the next command seq.

Online/offline: a Hello marks the node online (and a node whose status is
offline becomes online, by "hub"); a stream that ends, or whose agent stays
silent for more than three heartbeat intervals, marks it offline (and online
or ready become offline). Maintenance stays maintenance. These writes go
through one writer thread, in order, so the event loop never waits on a disk
and `online` is written only when it changes. A hub that stops does not mark
its nodes offline; after a start, those still marked online whose agent did not
come back within three heartbeat intervals are.

Each session remembers the serial of the certificate its stream was
authenticated with; when the node's credential record changes so that serial
is no longer accepted (a new join token: "rotated"; revoked or the node
deleted: "revoked"), the stream ends UNAUTHENTICATED at once. A renewal keeps
the serial in use accepted, so it closes nothing.

A Hello also records `hardware.agent = {version, capabilities}` (merged with
the Hello's inventory, written only when it changed): the rollout's verify
step waits for a node online with the version it installed.

Everything here runs on the hub's event loop, except the listeners named
`_on_*_threadsafe` (store writes may happen on any thread).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
import uuid
from collections.abc import Callable, MutableMapping
from concurrent.futures import Executor, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import grpc

from console.errors import Conflict, NotFound, Unavailable
from console.hub.convert import dict_from_struct
from console.hub.live import LiveState
from console.models import AgentCredential, GameNode
from console.service import Services
from console.settings import HubSettings
from proto import gamenode_pb2 as pb

__all__ = ["MISSED_HEARTBEATS", "Session", "SessionRegistry"]

log = logging.getLogger(__name__)

MISSED_HEARTBEATS = 3
"""A session whose agent was silent for this many heartbeat intervals is closed and its node marked offline."""
MAX_PENDING_COMMANDS = 1000
"""Commands per node waiting for their ack; more are refused."""
CLOSE_GRACE = 5.0
"""Seconds a closed session's stream may take to end before its handler is cancelled."""
ACTOR = "hub"


class _Signal:
    """A marker in a session's outbox (not a message)."""

    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return f"<{self.name}>"


ACK = _Signal("ack")
"""Send an EventAck for everything handled so far."""
CLOSE = _Signal("close")
"""End the stream."""


class _NodeLogger(logging.LoggerAdapter):  # type: ignore[type-arg]
    """Every line names the node (and the peer it talks from)."""

    def process(self, msg: Any, kwargs: MutableMapping[str, Any]) -> tuple[Any, MutableMapping[str, Any]]:
        assert self.extra is not None
        return f"node {self.extra['node']} ({self.extra['peer']}): {msg}", kwargs


@dataclass
class _Pending:
    message: pb.HubMessage
    future: asyncio.Future[pb.CommandAck]


@dataclass
class _NodeState:
    """What the registry remembers of a node across its sessions."""

    session_id: str = ""
    last_event_seq: int | None = None
    """The last reliable event seq handled; None until the node's first Hello since the hub started."""
    command_seq: int = 0
    pending: dict[str, _Pending] = field(default_factory=dict)
    """Commands not yet acked, by command id, in seq order."""


class Session:
    """One agent stream: its node, its intervals, when it was last heard of, what to send it."""

    def __init__(
        self, node_id: str, session_id: str, peer: str, serial: str, heartbeat_s: float,
        metrics_s: float, now: float, state: _NodeState,
    ) -> None:
        self.node_id = node_id
        self.session_id = session_id
        self.peer = peer
        self.serial = serial
        """The serial (hex) of the certificate the stream was authenticated with."""
        self.heartbeat_s = heartbeat_s
        self.metrics_s = metrics_s
        self.last_seen = now
        self.state = state
        self.outbox: asyncio.Queue[pb.HubMessage | _Signal] = asyncio.Queue()
        self.log = _NodeLogger(log, {"node": node_id, "peer": peer})
        self.closed = False
        self.close_code: grpc.StatusCode | None = None
        """The status the stream ends with; None: it ends OK (the agent closed it, or the hub stopped)."""
        self.close_reason = ""
        self.task: asyncio.Task[Any] | None = None
        """The stream's handler, cancelled when it does not end within CLOSE_GRACE of `close()`."""
        self.writes_in_flight = 0
        """Events accepted whose changes are still being written; the next ack waits for them."""
        self._ack_queued = False
        self._force: asyncio.TimerHandle | None = None

    def send(self, message: pb.HubMessage) -> None:
        if not self.closed:
            self.outbox.put_nowait(message)

    def request_ack(self) -> None:
        """Ack everything handled so far, once, however many events arrive before the writer runs."""
        if not self._ack_queued and not self.closed:
            self._ack_queued = True
            self.outbox.put_nowait(ACK)

    def ack_message(self) -> pb.HubMessage:
        self._ack_queued = False
        return pb.HubMessage(ack=pb.EventAck(up_to_seq=self.state.last_event_seq or 0))

    def close(self, code: grpc.StatusCode | None, reason: str) -> None:
        """End the stream with `code` (None: OK); idempotent."""
        if self.closed:
            return
        self.closed = True
        self.close_code, self.close_reason = code, reason
        self.outbox.put_nowait(CLOSE)
        task = self.task
        if task is not None and not task.done():
            self._force = asyncio.get_running_loop().call_later(CLOSE_GRACE, task.cancel)

    def ended(self) -> None:
        if self._force is not None:
            self._force.cancel()

    def __repr__(self) -> str:
        return f"<Session {self.session_id} node={self.node_id} peer={self.peer}>"


class SessionRegistry:
    """Node id → live session; commands, event seqs and online/offline bookkeeping."""

    def __init__(
        self,
        services: Services,
        live: LiveState,
        settings: HubSettings,
        clock: Callable[[], float] = time.monotonic,
        writer: Executor | None = None,
    ) -> None:
        self.services = services
        self.live = live
        self.settings = settings
        self.clock = clock
        self.loop = asyncio.get_running_loop()
        self.sessions: dict[str, Session] = {}
        self.started_at = clock()
        self._nodes: dict[str, _NodeState] = {}
        self._writer = writer or ThreadPoolExecutor(max_workers=1, thread_name_prefix="gamenode-persist")
        self._own_writer = writer is None
        self._swept = False
        self._closing = False
        self._unsubscribe = [
            services.credentials.credentials.subscribe(self._on_credential_threadsafe),
            services.nodes.nodes.subscribe(self._on_node_threadsafe),
        ]

    # --- queries --------------------------------------------------------------

    def connected(self, node_id: str) -> bool:
        return node_id in self.sessions

    def get(self, node_id: str) -> Session | None:
        return self.sessions.get(node_id)

    def intervals(self, agents: int | None = None) -> tuple[float, float]:
        """(heartbeat, metrics) seconds to hand an agent: widened so the fleet stays under `heartbeat_rate`."""
        n = len(self.sessions) + 1 if agents is None else agents
        heartbeat = max(self.settings.heartbeat_interval, n / self.settings.heartbeat_rate)
        return heartbeat, max(self.settings.metrics_interval, 2 * heartbeat)

    def last_event_seq(self, node_id: str) -> int | None:
        state = self._nodes.get(node_id)
        return state.last_event_seq if state else None

    def pending_commands(self, node_id: str) -> list[pb.HubMessage]:
        state = self._nodes.get(node_id)
        return [p.message for p in state.pending.values()] if state else []

    # --- sessions -------------------------------------------------------------

    def attach(self, hello: pb.Hello, peer: str, serial: str) -> tuple[Session, pb.Welcome]:
        """Register the stream of a Hello authenticated by certificate `serial`; any earlier stream of the
        node is replaced."""
        node_id = hello.node_id
        state = self._nodes.setdefault(node_id, _NodeState())
        resumed = bool(hello.previous_session_id) and hello.previous_session_id == state.session_id
        if not resumed:
            state.session_id = secrets.token_hex(16)
        if state.last_event_seq is None:
            resume_from = max(1, hello.first_unacked_seq)
            state.last_event_seq = resume_from - 1
        else:
            resume_from = state.last_event_seq + 1
        state.command_seq = max(state.command_seq, hello.last_command_seq)
        old = self.sessions.get(node_id)
        heartbeat_s, metrics_s = self.intervals(len(self.sessions) + (0 if old else 1))
        session = Session(node_id, state.session_id, peer, serial, heartbeat_s, metrics_s, self.clock(), state)
        self.sessions[node_id] = session
        if old is not None:
            old.close(grpc.StatusCode.ABORTED, f"replaced by a newer stream for node {node_id}")
            session.log.info("new stream replaces the one from %s", old.peer)
        else:
            self._persist(self._persist_online, node_id)
        inventory = hello.inventory if hello.HasField("inventory") else None
        self._persist(self._persist_inventory, node_id, inventory, _agent_info(hello))
        self.live.set_metrics_interval(node_id, metrics_s)
        for pending in state.pending.values():  # in seq order; the agent dedupes by command id
            session.send(pending.message)
        session.log.info("connected (session %s%s, agent %s)", session.session_id, ", resumed" if resumed else "",
                         hello.agent_version or "?")
        welcome = pb.Welcome(
            session_id=session.session_id,
            resumed=resumed,
            heartbeat_interval_ms=round(heartbeat_s * 1000),
            metrics_interval_ms=round(metrics_s * 1000),
            resume_from_seq=resume_from,
        )
        return session, welcome

    def detach(self, session: Session) -> None:
        """The session's stream ended; its node goes offline unless a newer stream took over."""
        session.ended()
        if self.sessions.get(session.node_id) is not session:
            return
        del self.sessions[session.node_id]
        reason = session.close_reason or "agent disconnected"
        session.log.info("disconnected: %s", reason)
        if not self._closing:
            self._persist(self._persist_offline, session.node_id, reason)

    def close_node(self, node_id: str, code: grpc.StatusCode, reason: str) -> bool:
        """Close the node's stream, if it has one."""
        session = self.sessions.get(node_id)
        if session is None:
            return False
        session.close(code, reason)
        return True

    def check_timeouts(self) -> list[Session]:
        """Close the sessions silent for more than MISSED_HEARTBEATS intervals; the monitor calls it."""
        now = self.clock()
        closed = []
        for session in list(self.sessions.values()):
            silent = now - session.last_seen
            if silent > MISSED_HEARTBEATS * session.heartbeat_s:
                reason = f"no heartbeat for {silent:.0f} s"
                session.log.warning("%s: closing its stream", reason)
                session.close(grpc.StatusCode.UNAVAILABLE, reason)
                del self.sessions[session.node_id]
                self._persist(self._persist_offline, session.node_id, reason)
                closed.append(session)
        if not self._swept and now - self.started_at > MISSED_HEARTBEATS * self.intervals()[0]:
            self.sweep_stale_online()
        return closed

    def sweep_stale_online(self) -> None:
        """Nodes marked online whose agent has not connected since this hub started go offline."""
        self._swept = True
        for node in self.services.nodes.nodes.filter(lambda n: n.online):
            if node.id not in self.sessions:
                self._persist(self._persist_offline, node.id, "agent did not reconnect after the hub restarted")

    async def monitor(self, period: float = 1.0) -> None:
        """Check for silent agents every `period` seconds until cancelled."""
        while True:
            await asyncio.sleep(period)
            try:
                self.check_timeouts()
            except Exception:
                log.exception("session monitor")

    # --- what agents send -----------------------------------------------------

    def accept_event(self, session: Session, seq: int) -> bool:
        """Whether reliable event `seq` is new (then it counts as handled); duplicates are dropped."""
        state = session.state
        last = state.last_event_seq or 0
        if seq <= last:
            return False
        state.last_event_seq = seq
        return True

    def command_acked(self, session: Session, ack: pb.CommandAck) -> None:
        pending = session.state.pending.pop(ack.command_id, None)
        if pending is None:
            session.log.debug("ack for command %s, which is not pending", ack.command_id)
        elif not pending.future.done():
            pending.future.set_result(ack)

    def inventory(self, session: Session, inventory: pb.Inventory) -> None:
        self._persist(self._persist_inventory, session.node_id, inventory)

    # --- commands -------------------------------------------------------------

    def send_command(self, node_id: str, command: pb.Command) -> asyncio.Future[pb.CommandAck]:
        """Send `command` (now, or when the node connects) and a future of its ack.

        Gives the command an id when it has none and the node's next command
        seq; it stays pending, and is resent on every reconnect, until acked or
        until the future is cancelled (e.g. by a caller's timeout).
        """
        state = self._nodes.setdefault(node_id, _NodeState())
        if len(state.pending) >= MAX_PENDING_COMMANDS:
            raise Conflict(f"node {node_id!r} has {len(state.pending)} commands waiting for its agent")
        if not command.command_id:
            command.command_id = uuid.uuid4().hex
        command_id = command.command_id
        if command_id in state.pending:
            raise Conflict(f"command {command_id!r} is already pending for node {node_id!r}")
        state.command_seq += 1
        message = pb.HubMessage(seq=state.command_seq, command=command)
        future: asyncio.Future[pb.CommandAck] = self.loop.create_future()
        state.pending[command_id] = _Pending(message, future)

        def forget(done: asyncio.Future[pb.CommandAck]) -> None:
            if not done.cancelled():
                done.exception()  # retrieved: a failure nobody awaited is not an "unretrieved" error
            else:
                pending = state.pending.get(command_id)
                if pending is not None and pending.future is done:
                    del state.pending[command_id]

        future.add_done_callback(forget)
        session = self.sessions.get(node_id)
        if session is not None:
            session.send(message)
        return future

    # --- shutdown -------------------------------------------------------------

    async def drain(self) -> None:
        """Wait until every online/offline/inventory write queued so far is on disk."""
        await self.loop.run_in_executor(self._writer, lambda: None)

    async def close(self, timeout: float = 5.0) -> None:
        """Close every stream (nodes stay marked online), fail pending commands, flush the writes."""
        self._closing = True
        for unsubscribe in self._unsubscribe:
            unsubscribe()
        tasks = [s.task for s in self.sessions.values() if s.task is not None]
        for session in list(self.sessions.values()):
            session.close(grpc.StatusCode.UNAVAILABLE, "the hub is shutting down")
        if tasks:
            await asyncio.wait(tasks, timeout=timeout)
        for state in self._nodes.values():
            for pending in state.pending.values():
                if not pending.future.done():
                    pending.future.set_exception(Unavailable("the hub is shutting down"))
            state.pending.clear()
        await self.drain()
        if self._own_writer:
            self._writer.shutdown(wait=True)

    # --- store listeners (any thread) -----------------------------------------

    def _on_credential_threadsafe(self, node_id: str, record: AgentCredential | None) -> None:
        self._call_soon(self._credential_changed, node_id, record)

    def _on_node_threadsafe(self, node_id: str, record: GameNode | None) -> None:
        if record is None:
            self._call_soon(self._node_deleted, node_id)

    def _call_soon(self, fn: Callable[..., None], *args: Any) -> None:
        with contextlib.suppress(RuntimeError):  # the loop is closed: the hub has stopped
            self.loop.call_soon_threadsafe(fn, *args)

    def _credential_changed(self, node_id: str, record: AgentCredential | None) -> None:
        """A stream whose certificate is no longer the node's current or previous one ends at once."""
        session = self.sessions.get(node_id)
        if session is not None and (record is None or not record.accepts(session.serial)):
            what = "revoked" if record is None else "rotated"
            session.log.warning("credential %s: closing its stream", what)
            session.close(grpc.StatusCode.UNAUTHENTICATED, f"the credential for node {node_id} was {what}")

    def _node_deleted(self, node_id: str) -> None:
        self.close_node(node_id, grpc.StatusCode.NOT_FOUND, f"node {node_id} was deleted")
        self.live.forget(node_id)
        state = self._nodes.pop(node_id, None)
        if state is not None:
            for pending in state.pending.values():
                if not pending.future.done():
                    pending.future.set_exception(NotFound("node", node_id))

    # --- writes (one writer thread, in order) ----------------------------------

    def _persist(self, fn: Callable[..., None], *args: Any) -> None:
        future = self.loop.run_in_executor(self._writer, fn, *args)
        future.add_done_callback(_log_failure)

    def _persist_online(self, node_id: str) -> None:
        self.services.nodes.set_connected(node_id, True, "agent connected", ACTOR)

    def _persist_offline(self, node_id: str, reason: str) -> None:
        self.services.nodes.set_connected(node_id, False, reason, ACTOR)

    def _persist_inventory(
        self, node_id: str, inventory: pb.Inventory | None, agent: dict[str, Any] | None = None
    ) -> None:
        """Merge the inventory (and, from a Hello, `hardware.agent`); written only when something changed."""
        hardware = dict_from_struct(inventory.hardware) if inventory and inventory.HasField("hardware") else None
        network = dict_from_struct(inventory.network) if inventory and inventory.HasField("network") else None
        if agent is not None:
            hardware = {**(hardware or {}), "agent": agent}
        self.services.nodes.merge_inventory(node_id, hardware, network)


def _agent_info(hello: pb.Hello) -> dict[str, Any]:
    """`hardware.agent` of a node: what its agent said it is in its Hello."""
    return {"version": hello.agent_version, "capabilities": list(hello.capabilities)}


def _log_failure(future: asyncio.Future[None]) -> None:
    if future.cancelled():
        return
    exc = future.exception()
    if isinstance(exc, NotFound):
        log.debug("node gone before its state was written: %s", exc)
    elif exc is not None:
        log.error("writing a node's connection state failed: %s", exc, exc_info=exc)
