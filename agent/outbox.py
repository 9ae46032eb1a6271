"""The outbox: reliable agent events kept until the hub acks them.

Every event gets the next `seq` (one counter over the agent's whole life, see
`agent.state`). Events stay here until a cumulative `EventAck(up_to_seq)` and
are sent again, in seq order, after a reconnect (`pending`).

Pipeline events and command acks are *persistent*: each is also written to
`STATE_DIR/outbox/<seq>.pb` (atomically, 0600) before `add` returns, so a
restarted agent still delivers them. The others (log chunks, instance reports,
inventory) live in memory only. The outbox is bounded: when full, the oldest
non-persistent event is dropped (logged, counted in `dropped`); persistent
events are never dropped.

The seq counter survives crashes by reservation: `state.json` holds a
`next_seq` up to `SEQ_BLOCK` ahead of the counter, re-saved when the counter
reaches it, so a restarted agent never reuses a seq the hub may have seen (it
may skip some; the hub accepts gaps).
"""

from __future__ import annotations

import contextlib
import logging
from pathlib import Path

from google.protobuf.message import DecodeError

from agent._files import ensure_private_dir, write_atomic
from agent.log import NodeLogger
from agent.state import StateStore
from proto import gamenode_pb2 as pb

__all__ = ["DEFAULT_LIMIT", "SEQ_BLOCK", "EventBody", "Outbox"]

DEFAULT_LIMIT = 10_000
SEQ_BLOCK = 1000

EventBody = pb.CommandAck | pb.PipelineEvent | pb.LogChunk | pb.InstanceReport | pb.Inventory
"""What may go through the outbox: the reliable bodies of `AgentMessage`."""

_FIELDS: dict[type[EventBody], str] = {
    pb.CommandAck: "command_ack",
    pb.PipelineEvent: "pipeline_event",
    pb.LogChunk: "log_chunk",
    pb.InstanceReport: "instance_report",
    pb.Inventory: "inventory",
}
_PERSISTENT = (pb.CommandAck, pb.PipelineEvent)


class Outbox:
    """Unacked reliable events in seq order; persistent ones mirrored on disk."""

    def __init__(
        self,
        store: StateStore,
        limit: int = DEFAULT_LIMIT,
        log: logging.Logger | NodeLogger | None = None,
    ) -> None:
        self._store = store
        self._log = log or logging.getLogger(__name__)
        self.directory = ensure_private_dir(store.directory / "outbox")
        self.limit = limit
        self.dropped = 0
        """Non-persistent events dropped because the outbox was full."""
        self._events: dict[int, pb.AgentMessage] = {}
        self._volatile: dict[int, None] = {}
        """Seqs of the non-persistent events, oldest first (an ordered set)."""
        self._load()
        last = next(reversed(self._events), 0)
        self._next = max(store.state.next_seq, last + 1)
        self._reserve()

    # --- reading ---------------------------------------------------------------

    @property
    def next_seq(self) -> int:
        return self._next

    def first_unacked_seq(self) -> int:
        """The oldest seq still here, or the next seq when empty (`Hello.first_unacked_seq`)."""
        return next(iter(self._events), self._next)

    def __len__(self) -> int:
        return len(self._events)

    def pending(self, from_seq: int = 0) -> list[pb.AgentMessage]:
        """The events with seq >= `from_seq`, oldest first (a snapshot: safe across awaits)."""
        tail: list[pb.AgentMessage] = []
        for seq in reversed(self._events):
            if seq < from_seq:
                break
            tail.append(self._events[seq])
        tail.reverse()
        return tail

    # --- writing ---------------------------------------------------------------

    def add(self, body: EventBody, *, persist: bool | None = None) -> int:
        """Queue an event and return its seq; `persist` defaults to True for pipeline events and acks."""
        persist = isinstance(body, _PERSISTENT) if persist is None else persist
        seq = self._next
        self._next += 1
        if self._next >= self._store.state.next_seq:
            self._reserve()
        message = pb.AgentMessage(seq=seq)
        getattr(message, _FIELDS[type(body)]).CopyFrom(body)
        if len(self._events) >= self.limit and not self._make_room(persist):
            return seq
        if persist:
            write_atomic(self._path(seq), message.SerializeToString())
        else:
            self._volatile[seq] = None
        self._events[seq] = message
        return seq

    def ack(self, up_to_seq: int) -> int:
        """Forget every event with seq <= `up_to_seq` (unlinking persisted ones); returns how many."""
        done = []
        for seq in self._events:
            if seq > up_to_seq:
                break
            done.append(seq)
        for seq in done:
            del self._events[seq]
            if seq in self._volatile:
                del self._volatile[seq]
            else:
                with contextlib.suppress(FileNotFoundError):
                    self._path(seq).unlink()
        return len(done)

    def advance_to(self, seq: int) -> None:
        """Never hand out a seq below `seq` (the hub has seen events up to `seq - 1`)."""
        if seq > self._next:
            self._next = seq
            if self._next >= self._store.state.next_seq:
                self._reserve()

    def checkpoint(self) -> None:
        """On a clean exit: record the exact next seq (no reservation gap on restart) and save state."""
        self._store.state.next_seq = self._next
        self._store.save()

    # --- internals -------------------------------------------------------------

    def _path(self, seq: int) -> Path:
        return self.directory / f"{seq}.pb"

    def _reserve(self) -> None:
        self._store.state.next_seq = self._next + SEQ_BLOCK
        self._store.save()

    def _make_room(self, persist: bool) -> bool:
        """Make room for one more event; False when the new (non-persistent) event is the one dropped."""
        if not self._volatile and persist:
            self._log.warning("outbox over its limit of %d with persistent events only; keeping them", self.limit)
            return True
        if self._volatile:
            oldest = next(iter(self._volatile))
            del self._volatile[oldest]
            del self._events[oldest]
        self.dropped += 1
        if self.dropped == 1 or self.dropped % 1000 == 0:
            self._log.warning("outbox full (%d events): %d non-persistent events dropped so far",
                              self.limit, self.dropped)
        return len(self._events) < self.limit

    def _load(self) -> None:
        loaded: dict[int, pb.AgentMessage] = {}
        for path in self.directory.iterdir():
            if path.name.startswith(".") and path.name.endswith(".tmp"):
                path.unlink(missing_ok=True)
                continue
            if path.suffix != ".pb" or not path.stem.isdigit():
                continue
            message = self._read(path)
            if message is not None:
                loaded[message.seq] = message
        for seq in sorted(loaded):
            self._events[seq] = loaded[seq]
        if loaded:
            self._log.info("outbox: %d unacked events from the state dir", len(loaded))

    def _read(self, path: Path) -> pb.AgentMessage | None:
        message = pb.AgentMessage()
        try:
            message.ParseFromString(path.read_bytes())
        except DecodeError:
            message.Clear()
        if message.seq != int(path.stem) or message.WhichOneof("body") is None:
            self._log.warning("outbox: %s is unreadable; kept aside as %s.corrupt", path, path.name)
            path.rename(path.with_name(path.name + ".corrupt"))
            return None
        return message

