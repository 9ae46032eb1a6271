"""CredentialService: the per-node agent credentials.

`issue(node_id)` makes a new random token and keeps only its SHA-256, so the
token is shown once (to whoever issued it, e.g. the SSH bootstrap) and never
again. Issuing again rotates: the new hash replaces the old one, which is then
revoked. `verify` compares hashes in constant time. The hub listens to the
credential store and closes the stream of a node whose credential changed.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import threading
from collections.abc import Callable
from datetime import datetime

from console.models import AgentCredential, utcnow
from console.store import CredentialStore, NodeStore

__all__ = ["CredentialService", "token_hash"]

TOKEN_BYTES = 32
"""Random bytes in a token (`secrets.token_urlsafe`): 43 characters."""


def token_hash(token: str) -> str:
    """Hex SHA-256 of a token, as stored."""
    return hashlib.sha256(token.encode()).hexdigest()


class CredentialService:
    def __init__(
        self,
        credentials: CredentialStore,
        nodes: NodeStore,
        clock: Callable[[], datetime] = utcnow,
        lock: threading.RLock | None = None,
    ) -> None:
        self.credentials = credentials
        self.nodes = nodes
        self.clock = clock
        self._lock = lock or threading.RLock()
        """Shared with NodeService: a node being deleted gets no new credential."""

    def issue(self, node_id: str) -> str:
        """A new token for the node's agent; any earlier one stops working. Returns the token."""
        token = secrets.token_urlsafe(TOKEN_BYTES)
        with self._lock:
            self.nodes.get(node_id)
            self.credentials.put(AgentCredential(id=node_id, sha256=token_hash(token), created_at=self.clock()))
        return token

    def revoke(self, node_id: str) -> bool:
        """Drop the node's credential; False when it had none (the node must exist)."""
        with self._lock:
            self.nodes.get(node_id)
            if node_id not in self.credentials:
                return False
            self.credentials.delete(node_id)
        return True

    def verify(self, node_id: str, token: str) -> AgentCredential | None:
        """The credential `token` matches, or None (unknown node, no credential, wrong token)."""
        record = self.credentials.find(node_id)
        if record is None or not token:
            return None
        return record if hmac.compare_digest(token_hash(token), record.sha256) else None

    def has_credential(self, node_id: str) -> bool:
        return node_id in self.credentials
