"""Hub commands, each command id executed at most once.

Before a handler runs, its id is recorded in `state.json` with a provisional
failure ("the agent stopped while running it"); afterwards with the real
outcome. So a command the hub sends again (it resends unacked commands after
a reconnect), or twice, or one that was running when the agent crashed, is
never run a second time: it is acked with `duplicate=true` and the recorded
outcome.

Handlers are registered per action (the `Command.action` oneof name: "ping",
"run_pipeline", ...). They must return promptly: long work (a pipeline run)
starts in the background and reports through events.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from agent.log import NodeLogger
from agent.state import CommandOutcome, StateStore
from proto import gamenode_pb2 as pb

__all__ = ["ACTIONS", "INTERRUPTED", "NOT_SUPPORTED", "CommandExecutor", "CommandHandler"]

CommandHandler = Callable[[pb.Command], Awaitable[CommandOutcome]]

NOT_SUPPORTED = "not supported by this agent yet"
INTERRUPTED = "the agent stopped while running this command"
ACTIONS = tuple(f.name for f in pb.Command.DESCRIPTOR.fields if f.containing_oneof is not None)
"""The `Command.action` names: "ping", "run_pipeline", ..."""


class CommandExecutor:
    def __init__(self, store: StateStore, log: logging.Logger | NodeLogger | None = None) -> None:
        self._store = store
        self._log = log or logging.getLogger(__name__)
        self._handlers: dict[str, CommandHandler] = {}
        self._running: set[str] = set()
        self.executed = 0
        """Handlers run by this executor (duplicates not counted)."""

    def register(self, action: str, handler: CommandHandler) -> None:
        """Run `handler` for commands whose action is `action` (replaces an earlier one)."""
        if action not in ACTIONS:
            raise ValueError(f"unknown command action {action!r} (known: {', '.join(ACTIONS)})")
        self._handlers[action] = handler

    async def execute(self, seq: int, command: pb.Command) -> pb.CommandAck | None:
        """Run `command` unless it ran before; the ack to send, or None while the same id is still running."""
        cid = command.command_id
        action = command.WhichOneof("action") or ""
        if not cid:
            self._log.warning("hub sent a %s command without command_id; not run", action or "empty")
            return pb.CommandAck(ok=False, error="command without command_id")
        first = self._store.outcome(cid)
        if cid in self._running:
            self._log.info("command %s (%s) is already running; its ack follows when done", cid, action)
            return None
        if first is not None:
            self._store.state.last_command_seq = max(self._store.state.last_command_seq, seq)
            self._log.info("command %s (%s) ran before (ok=%s); acking as duplicate", cid, action, first.ok)
            return pb.CommandAck(command_id=cid, ok=first.ok, error=first.error, duplicate=True)
        self._store.record(cid, CommandOutcome(False, INTERRUPTED), seq)
        self._store.save()
        self._running.add(cid)
        try:
            outcome = await self._run(cid, action, command)
        finally:
            self._running.discard(cid)
        self._store.record(cid, outcome, seq)
        self._store.save()
        return pb.CommandAck(command_id=cid, ok=outcome.ok, error=outcome.error)

    async def _run(self, cid: str, action: str, command: pb.Command) -> CommandOutcome:
        handler = self._handlers.get(action)
        self.executed += 1
        if handler is None:
            self._log.info("command %s: %s is %s", cid, action or "an empty command", NOT_SUPPORTED)
            return CommandOutcome(False, NOT_SUPPORTED)
        try:
            outcome = await handler(command)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            self._log.exception("command %s (%s) failed", cid, action)
            return CommandOutcome(False, f"{type(exc).__name__}: {exc}")
        self._log.debug("command %s (%s): ok=%s %s", cid, action, outcome.ok, outcome.error)
        return outcome
