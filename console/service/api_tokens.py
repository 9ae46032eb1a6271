"""ApiTokenService: the bearer tokens consoles, the CLI and REST clients show the hub.

A token is `ID.SECRET` (`console.service.tokens_crypto`); the hub keeps only an
HMAC of SECRET (keyed by `DATA_DIR/hub-secret.key`), so the token is shown once,
in the answer that created it, and a copy of the store cannot be used to log
in. `authenticate` finds the record by ID and compares the HMAC in constant
time; an unknown ID costs the same HMAC, so timing tells nothing about which
IDs exist.

The hub's first start writes an admin token to `DATA_DIR/admin.token` (0600):
whoever can read the data directory may already do anything, and the local CLI
and console then need no setup (`ensure_admin_token`).
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path

from pydantic import ValidationError

from console.errors import InvalidInput
from console.models import ApiToken, Role, utcnow
from console.service.tokens_crypto import hub_secret_key, new_token, split_token, token_mac, token_matches
from console.store import ApiTokenStore
from console.validation import field_errors

__all__ = ["ADMIN_TOKEN_FILE", "LOCAL_ADMIN_NAME", "ApiTokenService", "read_token_file"]

log = logging.getLogger(__name__)

ADMIN_TOKEN_FILE = "admin.token"
LOCAL_ADMIN_NAME = "admin (local)"
"""The name of the token in `DATA_DIR/admin.token`."""
MAX_TTL = timedelta(days=3650)
_NO_MAC = "0" * 64
"""Compared against when the id is unknown: the same work as a known one."""


class ApiTokenService:
    def __init__(self, tokens: ApiTokenStore, data_dir: Path, clock: Callable[[], datetime] = utcnow) -> None:
        self.tokens = tokens
        self.data_dir = Path(data_dir)
        self.clock = clock
        self._key: bytes | None = None
        self._lock = threading.Lock()

    @property
    def key(self) -> bytes:
        """The data dir's HMAC key, read (or made) on first use."""
        if self._key is None:
            self._key = hub_secret_key(self.data_dir)
        return self._key

    # --- tokens -----------------------------------------------------------------

    def create(
        self, name: str, role: Role | str, created_by: str = "", ttl: timedelta | None = None
    ) -> tuple[ApiToken, str]:
        """A new token: (its record, the token itself, which is never shown again)."""
        if ttl is not None and not timedelta(0) < ttl <= MAX_TTL:
            raise InvalidInput(f"ttl: must be more than 0 and at most {MAX_TTL.days} days (got {ttl})")
        token_id, token = new_token()
        now = self.clock()
        try:
            record = ApiToken(
                id=token_id, name=name, role=role,
                mac=token_mac(self.key, token), created_at=now, created_by=created_by[:256],
                expires_at=now + ttl if ttl is not None else None,
            )
        except ValidationError as exc:
            raise InvalidInput("invalid API token", field_errors(exc)) from None
        self.tokens.add(record)
        log.info("API token %s (%r, %s) created by %s", record.id, record.name, record.role, created_by or "?")
        return record, token

    def list(self) -> list[ApiToken]:
        """Every token (expired ones too), oldest first."""
        return sorted(self.tokens.list(), key=lambda t: (t.created_at, t.id))

    def get(self, token_id: str) -> ApiToken:
        return self.tokens.get(token_id)

    def revoke(self, token_id: str) -> ApiToken:
        """Delete the token (NotFound if there is none); it stops working at once."""
        record = self.tokens.delete(token_id)
        log.info("API token %s (%r) revoked", record.id, record.name)
        return record

    def authenticate(self, token: str) -> ApiToken | None:
        """The unexpired token `token` is, or None (malformed, unknown, wrong secret, expired)."""
        parts = split_token(token) if token else None
        if parts is None:
            return None
        record = self.tokens.find(parts[0])
        if not token_matches(self.key, token, record.mac if record is not None else _NO_MAC) or record is None:
            return None
        return None if record.expired(self.clock()) else record

    # --- the local admin token ------------------------------------------------------

    def ensure_admin_token(self, data_dir: Path | None = None) -> Path:
        """Write `DATA_DIR/admin.token` (0600, an admin token) unless it exists; its path.

        A new one replaces the records of earlier local admin tokens: their only copy was that file.
        """
        path = Path(data_dir or self.data_dir) / ADMIN_TOKEN_FILE
        with self._lock:
            if path.exists():
                if self.authenticate(read_token_file(path) or "") is None:
                    log.warning("%s holds no valid token (revoked or expired); delete it and restart the hub "
                                "to get a new one", path)
                return path
            for old in self.tokens.filter(lambda t: t.name == LOCAL_ADMIN_NAME):
                self.tokens.delete(old.id)
            record, token = self.create(LOCAL_ADMIN_NAME, Role.ADMIN, created_by="hub")
            _write_private(path, token + "\n")
        log.info("wrote the local admin API token %s to %s", record.id, path)
        return path


def read_token_file(path: Path) -> str | None:
    """The token in `path` (first line, stripped), or None when it cannot be read."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return None
    token = text.strip().splitlines()[0].strip() if text.strip() else ""
    return token or None


def _write_private(path: Path, text: str) -> None:
    """Write `text` to `path` whole, readable by this user only (0600 from the start)."""
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, text.encode())
        os.fsync(fd)
    finally:
        os.close(fd)
    os.chmod(tmp, 0o600)
    os.replace(tmp, path)
