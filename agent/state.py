"""The agent's state dir: what must survive a restart of the agent.

    STATE_DIR/            0700
      state.json          0600: next event seq, last hub command seq, session id, executed commands
      outbox/<seq>.pb     0600: persisted reliable events (see `agent.outbox`)

`state.json` is written atomically (temp file, fsync, rename, fsync dir). It
remembers the last `EXECUTED_LIMIT` command ids with their outcome, so a
command the hub sends again (after a reconnect, or twice) is acked with its
first outcome instead of running again.
"""

from __future__ import annotations

import json
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

from agent._files import ensure_private_dir, write_atomic
from agent.errors import StateError

__all__ = ["EXECUTED_LIMIT", "AgentState", "CommandOutcome", "StateStore"]

EXECUTED_LIMIT = 1000
"""How many executed command ids are remembered (oldest forgotten first)."""

_VERSION = 1


class CommandOutcome(NamedTuple):
    ok: bool
    error: str = ""


@dataclass
class AgentState:
    next_seq: int = 1
    """The first event seq a restarted agent may use (a reservation ahead of the outbox's counter)."""
    last_command_seq: int = 0
    """The highest hub command seq seen."""
    session_id: str = ""
    """The hub session of the last connection: `Hello.previous_session_id` of the next one."""
    executed: OrderedDict[str, CommandOutcome] = field(default_factory=OrderedDict)
    """Executed command ids, oldest first, with their outcome."""

    def to_json(self) -> dict[str, Any]:
        return {
            "version": _VERSION,
            "next_seq": self.next_seq,
            "last_command_seq": self.last_command_seq,
            "session_id": self.session_id,
            "executed": [{"id": cid, "ok": out.ok, "error": out.error} for cid, out in self.executed.items()],
        }

    @classmethod
    def from_json(cls, data: Any) -> AgentState:
        if not isinstance(data, dict):
            raise ValueError("expected a JSON object")
        executed: OrderedDict[str, CommandOutcome] = OrderedDict()
        for item in data.get("executed", []):
            executed[str(item["id"])] = CommandOutcome(bool(item["ok"]), str(item.get("error", "")))
        return cls(
            next_seq=max(1, int(data.get("next_seq", 1))),
            last_command_seq=max(0, int(data.get("last_command_seq", 0))),
            session_id=str(data.get("session_id", "")),
            executed=executed,
        )


class StateStore:
    """`STATE_DIR/state.json`, loaded on construction; `save()` after every change that matters."""

    def __init__(self, directory: Path, executed_limit: int = EXECUTED_LIMIT) -> None:
        self.directory = ensure_private_dir(directory)
        self.path = directory / "state.json"
        self.executed_limit = executed_limit
        self.state = self._load()

    def _load(self) -> AgentState:
        try:
            raw = self.path.read_bytes()
        except FileNotFoundError:
            return AgentState()
        try:
            return AgentState.from_json(json.loads(raw))
        except (ValueError, KeyError, TypeError) as exc:
            raise StateError(f"{self.path} is corrupt ({exc}); move it aside to start afresh") from exc

    def save(self) -> None:
        data = json.dumps(self.state.to_json(), separators=(",", ":")).encode()
        write_atomic(self.path, data)

    def outcome(self, command_id: str) -> CommandOutcome | None:
        """The first outcome of `command_id`, or None when it never ran (or was forgotten)."""
        return self.state.executed.get(command_id)

    def record(self, command_id: str, outcome: CommandOutcome, seq: int = 0) -> None:
        """Remember an executed command (not saved: call `save()`)."""
        executed = self.state.executed
        executed[command_id] = outcome
        executed.move_to_end(command_id)
        while len(executed) > self.executed_limit:
            executed.popitem(last=False)
        self.state.last_command_seq = max(self.state.last_command_seq, seq)
