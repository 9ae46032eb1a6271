"""Game instances."""

from __future__ import annotations

from console.models import Instance
from console.store.base import YamlStore

__all__ = ["InstanceStore"]


class InstanceStore(YamlStore[Instance]):
    kind = "instance"
    model = Instance

    def on_node(self, node_id: str) -> list[Instance]:
        return self.filter(lambda i: i.node_id == node_id)
