"""Per-node loggers: every line names the node it is about."""

from __future__ import annotations

import logging
from collections.abc import MutableMapping
from typing import Any

__all__ = ["NodeLogger", "node_logger"]


class NodeLogger(logging.LoggerAdapter[logging.Logger]):
    """Prefixes each message with `[node ID]` and adds `node_id` to the record."""

    def process(self, msg: Any, kwargs: MutableMapping[str, Any]) -> tuple[Any, MutableMapping[str, Any]]:
        node_id = (self.extra or {}).get("node_id", "?")
        kwargs.setdefault("extra", {})["node_id"] = node_id
        return f"[node {node_id}] {msg}", kwargs


def node_logger(name: str, node_id: str) -> NodeLogger:
    return NodeLogger(logging.getLogger(name), {"node_id": node_id})
