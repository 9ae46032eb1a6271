"""The node's identity in its state dir: its key, its certificate and the hub CA it pins.

    STATE_DIR/identity/     0700
      key.pem               0600  the node's EC key (made here, never sent anywhere)
      cert.pem              0644  its client certificate from the hub's CA (CN = node id)
      ca.pem                0644  the hub CA the agent trusts (copied from `--ca` when it joined)
      joined                0600  SHA-256 of the join token it exchanged last (a token works once:
                                  the agent does not offer it again)

Each file is written whole (temp file, fsync, rename). A new key and its
certificate are first written beside the old ones (`next-key.pem`,
`next-cert.pem`), then renamed over them; a crash anywhere in between leaves
either the old pair or a complete next pair, which `load` finishes moving in.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from cryptography import x509

from agent import pki
from agent._files import ensure_private_dir, fsync_dir, write_atomic
from agent.errors import StateError

__all__ = ["CA_FILE", "CERT_FILE", "IDENTITY_DIR", "KEY_FILE", "Identity", "IdentityStore"]

IDENTITY_DIR = "identity"
KEY_FILE = "key.pem"
CERT_FILE = "cert.pem"
CA_FILE = "ca.pem"
JOINED_FILE = "joined"
NEXT = "next-"
"""Prefix of a new key and certificate not yet moved over the current ones."""


@dataclass(frozen=True)
class Identity:
    """A key and the certificate the hub issued for it."""

    key: pki.PrivateKey
    cert: x509.Certificate
    obtained: datetime
    """When this certificate reached the node (its file's mtime): renewal counts from here."""

    @property
    def node_id(self) -> str:
        return pki.cert_node_id(self.cert)

    @property
    def serial(self) -> str:
        return pki.serial_hex(self.cert)

    @property
    def not_after(self) -> datetime:
        return self.cert.not_valid_after_utc

    @property
    def key_pem(self) -> bytes:
        return pki.key_pem(self.key)

    @property
    def cert_pem(self) -> bytes:
        return pki.cert_pem(self.cert)

    def expired(self, now: datetime | None = None) -> bool:
        return (now or datetime.now(UTC)) >= self.not_after

    def renew_due(self) -> datetime:
        """When to ask for the next certificate: two thirds into its life, counted no earlier than `obtained`.

        A certificate starts a few minutes in the past (for nodes whose clock
        lags), so for a very short lifetime `pki.renew_at` alone is already due
        when the certificate arrives; counting from `obtained` keeps renewals
        from following each other back to back.
        """
        since_obtained = self.obtained + (self.not_after - self.obtained) * 2 / 3
        return max(pki.renew_at(self.cert), since_obtained)

    def describe(self) -> str:
        """`serial S, valid until T UTC` (never the key)."""
        return f"serial {self.serial}, valid until {self.not_after:%Y-%m-%d %H:%M:%S} UTC"


class IdentityStore:
    """`STATE_DIR/identity`: reads and replaces the node's key, certificate, pinned CA and used join token."""

    def __init__(self, state_dir: Path) -> None:
        self.dir = state_dir / IDENTITY_DIR
        self.key_path = self.dir / KEY_FILE
        self.cert_path = self.dir / CERT_FILE
        self.ca_path = self.dir / CA_FILE
        self.joined_path = self.dir / JOINED_FILE

    def has_certificate(self) -> bool:
        return self.cert_path.is_file()

    def load(self) -> Identity | None:
        """The stored identity; None when there is no certificate yet; `StateError` when it cannot be used."""
        self._finish_swap()
        try:
            cert_pem = self.cert_path.read_bytes()
            obtained = datetime.fromtimestamp(self.cert_path.stat().st_mtime, UTC)
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise StateError(f"cannot read {self.cert_path}: {exc}") from None
        try:
            key_pem = self.key_path.read_bytes()
        except FileNotFoundError:
            raise StateError(f"{self.cert_path} has no key beside it ({self.key_path} is missing)") from None
        except OSError as exc:
            raise StateError(f"cannot read {self.key_path}: {exc}") from None
        try:
            identity = Identity(pki.load_key(key_pem, str(self.key_path)), pki.load_cert(cert_pem, str(self.cert_path)),
                                obtained)
        except pki.PkiError as exc:
            raise StateError(str(exc)) from None
        _check_pair(identity.key, identity.cert, f"{self.key_path} does not match {self.cert_path} "
                                                 "(a renewal was interrupted?)")
        return identity

    def usable(self, node_id: str, now: datetime | None = None) -> tuple[Identity | None, str]:
        """(the identity, "") when it can open a stream for `node_id`; else (None or the stale one, why not)."""
        try:
            identity = self.load()
        except StateError as exc:
            return None, exc.message
        if identity is None:
            return None, f"no certificate in {self.dir} yet"
        if identity.node_id != node_id:
            return None, f"{self.cert_path} is node {identity.node_id!r}'s certificate, not {node_id!r}'s"
        if identity.expired(now):
            return identity, f"its certificate expired at {identity.not_after:%Y-%m-%d %H:%M:%S} UTC"
        return identity, ""

    def save(self, key: pki.PrivateKey, cert_pem: bytes, node_id: str) -> Identity:
        """Store a new key and its certificate for `node_id` (key first); the identity as stored."""
        cert = pki.load_cert(cert_pem, "the hub's certificate")
        _check_pair(key, cert, "the hub's certificate is not for the key the agent sent")
        if pki.cert_node_id(cert) != node_id:
            raise StateError(f"the hub's certificate names node {pki.cert_node_id(cert)!r}, not {node_id!r}")
        ensure_private_dir(self.dir)
        next_key, next_cert = self._next_paths()
        write_atomic(next_key, pki.key_pem(key))
        write_atomic(next_cert, pki.cert_pem(cert), 0o644)
        self._finish_swap()
        return Identity(key, cert, datetime.now(UTC))

    def _next_paths(self) -> tuple[Path, Path]:
        return self.dir / (NEXT + KEY_FILE), self.dir / (NEXT + CERT_FILE)

    def _finish_swap(self) -> None:
        """Move a complete next pair over the current one (a crash may have stopped `save` half way)."""
        next_key, next_cert = self._next_paths()
        if not next_cert.is_file():
            next_key.unlink(missing_ok=True)  # the crash came before the certificate: keep the old pair
            return
        if next_key.is_file():
            os.replace(next_key, self.key_path)
        os.replace(next_cert, self.cert_path)
        fsync_dir(self.dir)

    def load_ca(self) -> bytes | None:
        try:
            return self.ca_path.read_bytes()
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise StateError(f"cannot read {self.ca_path}: {exc}") from None

    def save_ca(self, ca_pem: bytes) -> None:
        ensure_private_dir(self.dir)
        if self.load_ca() != ca_pem:
            write_atomic(self.ca_path, ca_pem, 0o644)

    def token_used(self, token: str) -> bool:
        """Whether this join token was exchanged already (the hub takes each once)."""
        try:
            return self.joined_path.read_text(encoding="ascii").strip() == _digest(token)
        except (OSError, UnicodeDecodeError):
            return False

    def mark_used(self, token: str) -> None:
        ensure_private_dir(self.dir)
        write_atomic(self.joined_path, (_digest(token) + "\n").encode())


def _digest(token: str) -> str:
    return hashlib.sha256(token.strip().encode()).hexdigest()


def _check_pair(key: pki.PrivateKey, cert: x509.Certificate, problem: str) -> None:
    try:
        same = pki.key_fingerprint(key.public_key()) == pki.key_fingerprint(cert.public_key())
    except pki.PkiError:
        same = False
    if not same:
        raise StateError(problem)
