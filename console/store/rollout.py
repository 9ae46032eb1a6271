"""Agent rollouts: one file per rollout, written when a host's step changes state."""

from __future__ import annotations

from console.models import RolloutRecord
from console.store.base import YamlStore

__all__ = ["RolloutStore"]


class RolloutStore(YamlStore[RolloutRecord]):
    kind = "rollout"
    model = RolloutRecord

    def unfinished(self) -> list[RolloutRecord]:
        """Rollouts a hub left pending or running (it stopped during them)."""
        return self.filter(lambda r: not r.state.finished)
