"""NodeService: the business rules for nodes (the seed's `NodeService`).

Node status state machine (`UpdateNodeStatus`):

    offline ──► online ──► ready
       ▲  ╲       │ ▲        │
       │   ╲      ▼ │        ▼
       └────── maintenance ◄─┘      (any status ──► maintenance; leaving it
                                      goes to offline, online or ready)

    offline → online, maintenance
    online  → ready, offline, maintenance
    ready   → online, offline, maintenance
    maintenance → offline, online, ready

Setting the status a node already has changes nothing. Entering maintenance
needs a reason. Every change is kept in the node's history (who, when, why).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import datetime
from typing import Any

from pydantic import Field

from console.errors import Conflict, InvalidInput
from console.models import GameNode, Model, NodeHistory, NodeStatus, NodeType, StatusChange, utcnow
from console.service._input import SERVER_TIMES, client_fields, update_fields
from console.service.query import Page, paginate, sort_records
from console.service.selector import Selector
from console.store import CredentialStore, InstanceStore, NodeHistoryStore, NodeStore
from console.validation import validate

__all__ = ["HISTORY_LIMIT", "TRANSITIONS", "NodeQuery", "NodeService"]

HISTORY_LIMIT = 200
"""Status changes kept per node."""

TRANSITIONS: dict[NodeStatus, frozenset[NodeStatus]] = {
    NodeStatus.OFFLINE: frozenset({NodeStatus.ONLINE, NodeStatus.MAINTENANCE}),
    NodeStatus.ONLINE: frozenset({NodeStatus.READY, NodeStatus.OFFLINE, NodeStatus.MAINTENANCE}),
    NodeStatus.READY: frozenset({NodeStatus.ONLINE, NodeStatus.OFFLINE, NodeStatus.MAINTENANCE}),
    NodeStatus.MAINTENANCE: frozenset({NodeStatus.OFFLINE, NodeStatus.ONLINE, NodeStatus.READY}),
}

SORT_FIELDS = frozenset(
    {"id", "name", "model", "type", "status", "location", "online", "last_online", "created_at", "updated_at"}
)

# Fields a client may send but the hub owns: accepted (a Go client sends its
# whole struct back) and not taken from the request.
_SERVER_OWNED = ("online", "last_online", *SERVER_TIMES)


class NodeQuery(Model):
    """The filters of `ListNodes`; every one is optional."""

    status: NodeStatus | None = None
    type: NodeType | None = None
    location: str | None = None
    selector: str | None = None
    """Label selector, e.g. `region=eu,rack!=r3`."""
    q: str | None = None
    """Free text matched against id and name, ignoring case."""
    online: bool | None = None
    sort: str = "id"
    """Comma-separated fields, `-` before a field for descending: `-status,name`."""
    limit: int | None = Field(default=None, ge=0)
    offset: int = Field(default=0, ge=0)


class NodeService:
    def __init__(
        self,
        nodes: NodeStore,
        history: NodeHistoryStore,
        instances: InstanceStore,
        clock: Callable[[], datetime] = utcnow,
        lock: threading.RLock | None = None,
        credentials: CredentialStore | None = None,
    ) -> None:
        self.nodes = nodes
        self.history = history
        self.instances = instances
        self.credentials = credentials
        """Deleting a node revokes its agent credential."""
        self.clock = clock
        self._lock = lock or threading.RLock()
        """Held across check-and-write of anything that spans records (see `Services`)."""

    # --- queries ------------------------------------------------------------

    def list_nodes(self, query: NodeQuery | None = None) -> Page[GameNode]:
        query = query or NodeQuery()
        selector = Selector.parse(query.selector)
        keys = sort_records(query.sort, SORT_FIELDS)
        needle = (query.q or "").casefold()

        def wanted(n: GameNode) -> bool:
            return (
                (query.status is None or n.status == query.status)
                and (query.type is None or n.type == query.type)
                and (query.location is None or n.location == query.location)
                and (query.online is None or n.online == query.online)
                and (not needle or needle in n.id.casefold() or needle in n.name.casefold())
                and selector.matches(n.labels)
            )

        return paginate(keys([n for n in self.nodes.list() if wanted(n)]), query.limit, query.offset)

    def get_node(self, id: str) -> GameNode:
        return self.nodes.get(id)

    def status_history(self, id: str) -> list[StatusChange]:
        self.nodes.get(id)
        record = self.history.find(id)
        return list(record.changes) if record else []

    # --- changes ------------------------------------------------------------

    def create_node(self, data: dict[str, Any], actor: str = "api") -> GameNode:
        data = client_fields(data, _SERVER_OWNED)
        if not data.get("status"):
            data["status"] = NodeStatus.OFFLINE  # a Go client sends "" for unset
        now = self.clock()
        node = validate(GameNode, {**data, "created_at": now, "updated_at": now}, "node")
        self.nodes.add(node)
        self._record(node.id, None, node.status, actor, "created")
        return node

    def update_node(self, id: str, changes: dict[str, Any], actor: str = "api") -> GameNode:
        """Replace the fields given in `changes`; a status change follows the state machine."""
        changes = update_fields("node", id, changes, _SERVER_OWNED)
        if not changes.get("status"):
            changes.pop("status", None)
        with self._lock:
            old = self.nodes.get(id)
            if "status" in changes:
                self._check_transition(old, NodeStatus(changes["status"]) if _is_status(changes["status"]) else None,
                                       str(changes["status"]), "set by node update")
            now = self.clock()
            # merge over the node as it is now: set_online and update_labels do not take the status lock
            node = self.nodes.mutate(
                id, lambda cur: validate(GameNode, {**cur.model_dump(), **changes, "updated_at": now}, "node")
            )
            if node.status != old.status:
                self._record(id, old.status, node.status, actor, "set by node update")
        return node

    def update_labels(self, id: str, set: dict[str, str] | None = None, remove: list[str] | None = None) -> GameNode:
        """Add or change labels in `set`, drop those named in `remove`."""
        def change(node: GameNode) -> GameNode:
            labels = {k: v for k, v in node.labels.items() if k not in (remove or [])}
            labels.update(set or {})
            return validate(GameNode, {**node.model_dump(), "labels": labels, "updated_at": self.clock()}, "node")

        return self.nodes.mutate(id, change)

    def delete_node(self, id: str) -> GameNode:
        with self._lock:
            self.nodes.get(id)
            live = [i.id for i in self.instances.on_node(id) if i.state.live]
            if live:
                raise Conflict(f"node {id!r} still has {len(live)} live instance(s): {', '.join(live[:10])}; "
                               "stop them first")
            if self.credentials is not None and id in self.credentials:
                self.credentials.delete(id)  # first: the agent's stream closes before the node goes
            node = self.nodes.delete(id)
            if id in self.history:
                self.history.delete(id)
        return node

    def update_node_status(self, id: str, status: NodeStatus | str, reason: str = "", actor: str = "api") -> GameNode:
        """The seed's `UpdateNodeStatus(id, status, reason)`, with legal transitions and history."""
        if not _is_status(status):
            raise InvalidInput(f"status: must be one of {', '.join(s.value for s in NodeStatus)} (got {status!r})")
        new = NodeStatus(status)
        with self._lock:
            old = self.nodes.get(id)
            if old.status == new:
                return old
            self._check_transition(old, new, new.value, reason)
            now = self.clock()
            node = self.nodes.mutate(
                id, lambda cur: cur.model_copy(update={"status": new, "updated_at": now})
            )
            self._record(id, old.status, new, actor, reason)
        return node

    def merge_inventory(
        self, id: str, hardware: dict[str, Any] | None = None, network: dict[str, Any] | None = None
    ) -> GameNode:
        """Merge an agent's inventory into `hardware`/`network` (its top-level keys replace ours).

        Written only when something changed, so a reconnecting agent costs no write.
        """
        def change(node: GameNode) -> GameNode:
            new_hw = {**node.hardware, **(hardware or {})}
            new_net = {**node.network, **(network or {})}
            if new_hw == node.hardware and new_net == node.network:
                return node
            return validate(
                GameNode, {**node.model_dump(), "hardware": new_hw, "network": new_net, "updated_at": self.clock()},
                "node",
            )

        return self.nodes.mutate(id, change)

    def set_connected(self, id: str, online: bool, reason: str, actor: str = "hub") -> GameNode:
        """The agent stream's word: `online`, and the status that follows from it, in one write.

        Connected: an offline node becomes online. Disconnected: an online or
        ready node becomes offline. Maintenance stays. Nothing is written when
        nothing changes; a status change is recorded in history with `reason`.
        """
        with self._lock:
            old = self.nodes.get(id)
            status = old.status
            if online and status == NodeStatus.OFFLINE:
                status = NodeStatus.ONLINE
            elif not online and status in (NodeStatus.ONLINE, NodeStatus.READY):
                status = NodeStatus.OFFLINE
            if old.online == online and status == old.status:
                return old
            now = self.clock()
            update: dict[str, Any] = {"status": status, "updated_at": now}
            if old.online != online:
                update.update(online=online, last_online=now)
            node = self.nodes.mutate(id, lambda cur: cur.model_copy(update=update))
            if status != old.status:
                self._record(id, old.status, status, actor, reason)
        return node

    def set_online(self, id: str, online: bool) -> GameNode:
        """Connection state from the agent stream; written only when it changes."""
        def change(node: GameNode) -> GameNode:
            if node.online == online:
                return node
            now = self.clock()
            return node.model_copy(update={"online": online, "last_online": now, "updated_at": now})

        return self.nodes.mutate(id, change)

    # --- internals ----------------------------------------------------------

    def _check_transition(self, node: GameNode, new: NodeStatus | None, raw: str, reason: str) -> None:
        if new is None:
            raise InvalidInput(f"status: must be one of {', '.join(s.value for s in NodeStatus)} (got {raw!r})")
        if new != node.status and new not in TRANSITIONS[node.status]:
            allowed = ", ".join(sorted(s.value for s in TRANSITIONS[node.status]))
            raise Conflict(f"node {node.id!r} cannot go from {node.status.value} to {new.value} "
                           f"(from {node.status.value} it can go to: {allowed})")
        if new == NodeStatus.MAINTENANCE and new != node.status and not reason.strip():
            raise InvalidInput("reason: required when putting a node into maintenance")

    def _record(self, id: str, old: NodeStatus | None, new: NodeStatus, actor: str, reason: str) -> None:
        change = StatusChange(at=self.clock(), from_status=old, to_status=new, by=actor, reason=reason)
        record = self.history.find(id) or NodeHistory(id=id)
        self.history.put(record.model_copy(update={"changes": [*record.changes, change][-HISTORY_LIMIT:]}))


def _is_status(value: object) -> bool:
    return isinstance(value, str) and value in NodeStatus._value2member_map_
