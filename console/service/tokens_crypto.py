"""Bearer tokens of the form `ID.SECRET`, kept on the hub only as an HMAC of SECRET.

Both join tokens (agents) and API tokens (consoles, REST) use this shape: ID
finds the record (and may be shown, logged and audited), SECRET is shown once.
The HMAC key is `DATA_DIR/hub-secret.key` (32 random bytes, 0600, made on
first use), so a copy of the records alone cannot be used to check guesses.
Comparisons are constant time (`hmac.compare_digest`).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from pathlib import Path

from agent._files import write_atomic

__all__ = ["KEY_FILE", "hub_secret_key", "new_token", "split_token", "token_mac", "token_matches"]

KEY_FILE = "hub-secret.key"
ID_BYTES = 6
"""Random bytes in a token's id (12 hex characters)."""
SECRET_BYTES = 32
"""Random bytes in a token's secret (43 url-safe characters)."""


def hub_secret_key(data_dir: Path) -> bytes:
    """The data directory's HMAC key, made (0600, written whole) the first time."""
    path = data_dir / KEY_FILE
    try:
        key = path.read_bytes()
    except FileNotFoundError:
        key = b""
    if len(key) >= 32:
        return key
    key = secrets.token_bytes(32)
    write_atomic(path, key)
    return key


def new_token() -> tuple[str, str]:
    """(id, full token `ID.SECRET`)."""
    token_id = secrets.token_hex(ID_BYTES)
    return token_id, f"{token_id}.{secrets.token_urlsafe(SECRET_BYTES)}"


def split_token(token: str) -> tuple[str, str] | None:
    """(id, secret) of a well-formed `ID.SECRET`, else None."""
    token_id, dot, secret = token.strip().partition(".")
    if not dot or not token_id or not secret or len(token) > 256:
        return None
    return token_id, secret


def token_mac(key: bytes, token: str) -> str:
    """Hex HMAC-SHA256 of the token's SECRET part (what the hub stores)."""
    parts = split_token(token)
    secret = parts[1] if parts else token
    return hmac.new(key, secret.encode(), hashlib.sha256).hexdigest()


def token_matches(key: bytes, token: str, stored_mac: str) -> bool:
    return hmac.compare_digest(token_mac(key, token), stored_mac)
