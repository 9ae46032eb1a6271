"""Nodes and their status history."""

from __future__ import annotations

from console.models import GameNode, NodeHistory
from console.store.base import YamlStore

__all__ = ["NodeHistoryStore", "NodeStore"]


class NodeStore(YamlStore[GameNode]):
    kind = "node"
    model = GameNode


class NodeHistoryStore(YamlStore[NodeHistory]):
    kind = "node history"
    model = NodeHistory
