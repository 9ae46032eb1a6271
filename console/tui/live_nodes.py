"""The console's copy of the fleet: the latest dict of every node, and who wants to hear of changes.

The fleet screen feeds it from its `WatchNodes` stream; the node screen and
the command palette read it. One per app (`app.live`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

__all__ = ["LiveNodes", "NodeListener"]

NodeListener = Callable[[dict[str, Any] | None], None]
"""Called with the node's new state, or None when it was deleted."""


class LiveNodes:
    """Node id → the node as last received; listeners per node id."""

    def __init__(self) -> None:
        self.nodes: dict[str, dict[str, Any]] = {}
        self._listeners: dict[str, list[NodeListener]] = {}

    def __len__(self) -> int:
        return len(self.nodes)

    def get(self, node_id: str) -> dict[str, Any] | None:
        return self.nodes.get(node_id)

    def ids(self) -> list[str]:
        """Every node id, sorted."""
        return sorted(self.nodes)

    def update(self, nodes: Iterable[dict[str, Any]], deleted: Iterable[str] = ()) -> None:
        """Record changed and deleted nodes; tell the listeners of those nodes."""
        for node in nodes:
            node_id = str(node.get("id", ""))
            self.nodes[node_id] = node
            self._tell(node_id, node)
        for node_id in deleted:
            if self.nodes.pop(node_id, None) is not None:
                self._tell(node_id, None)

    def subscribe(self, node_id: str, listener: NodeListener) -> Callable[[], None]:
        """Call `listener` on every change of `node_id`; returns the function that unsubscribes."""
        self._listeners.setdefault(node_id, []).append(listener)

        def unsubscribe() -> None:
            listeners = self._listeners.get(node_id, [])
            if listener in listeners:
                listeners.remove(listener)
            if not listeners:
                self._listeners.pop(node_id, None)

        return unsubscribe

    def _tell(self, node_id: str, node: dict[str, Any] | None) -> None:
        for listener in list(self._listeners.get(node_id, ())):
            listener(node)
