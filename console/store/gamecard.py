"""Game cards."""

from __future__ import annotations

from console.models import GameCard
from console.store.base import YamlStore

__all__ = ["GameCardStore"]


class GameCardStore(YamlStore[GameCard]):
    kind = "game card"
    model = GameCard
