"""CredentialService: who a node agent is, and how it becomes it.

    issue(node)                   a join token `ID.SECRET`, shown once (the hub keeps its id and an HMAC
                                  of its secret), valid `join_token_ttl`; the node's certificates and any
                                  earlier token stop working (a connected agent is disconnected at once)
    enroll(node, token, csr)      Join: an unexpired, unused token buys a certificate (CN = node id) for the
                                  CSR's key, signed by the hub's CA; the token is then used up
    check(node, cert)             Connect: the certificate is this CA's, valid now, names the node and is
                                  its current or previous one
    confirm(node, serial)         the node connected with its current certificate: the previous one stops
                                  being accepted
    renew(node, csr, serial)      on the live stream: a new certificate for the node; the one in use stays
                                  accepted until the node connects with the new one
    revoke(node)                  forget everything: the node needs a new join token

A Join that fails says one thing whatever the reason (unknown node, no
token, wrong, used or expired token): "invalid or expired join token for
node X", so a caller learns nothing about what exists. A used token sent
again with the same key gets a certificate again (the agent may have died
before it wrote the first); with another key it is `EnrolledElsewhere`.
Secrets are compared in constant time and never kept, logged or raised.

The hub gives the service its CA (`ca`) and its settings at start; without a
CA, tokens can be issued but not used.
"""

from __future__ import annotations

import hmac
import secrets
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

from cryptography import x509

from agent.pki import PkiError, cert_pem, key_fingerprint, load_csr, serial_hex
from console.errors import GamenodeError, InvalidInput, Unauthorized, Unavailable
from console.models import AgentCredential, JoinToken, NodeCertificate, utcnow
from console.service.ca import DEFAULT_NODE_CERT_LIFETIME, HubCA
from console.service.tokens_crypto import hub_secret_key, new_token, split_token, token_mac
from console.store import CredentialStore, NodeStore

__all__ = ["DEFAULT_JOIN_TOKEN_TTL", "CredentialService", "EnrolledElsewhere", "IssuedToken"]

DEFAULT_JOIN_TOKEN_TTL = timedelta(hours=1)


class EnrolledElsewhere(GamenodeError):
    """A used join token sent with a key other than the one it enrolled (gRPC PERMISSION_DENIED)."""

    code = "forbidden"


@dataclass(frozen=True)
class IssuedToken:
    """A join token just issued: `token` is shown this once."""

    node_id: str
    token: str
    """`ID.SECRET`."""
    token_id: str
    expires_at: datetime


class CredentialService:
    def __init__(
        self,
        credentials: CredentialStore,
        nodes: NodeStore,
        clock: Callable[[], datetime] = utcnow,
        lock: threading.RLock | None = None,
        data_dir: Path | None = None,
    ) -> None:
        self.credentials = credentials
        self.nodes = nodes
        self.clock = clock
        self._lock = lock or threading.RLock()
        """Shared with NodeService: a node being deleted gets no new credential."""
        self._data_dir = data_dir
        """Where the HMAC key lives (`hub_secret_key`); None: a key for this process only."""
        self._key: bytes | None = None
        self.ca: HubCA | None = None
        """The hub's CA, set by the hub at start; None: Join, Connect and renewal are refused."""
        self.join_token_ttl = DEFAULT_JOIN_TOKEN_TTL
        self.cert_lifetime = DEFAULT_NODE_CERT_LIFETIME

    # --- join tokens ----------------------------------------------------------

    def issue_join_token(self, node_id: str) -> IssuedToken:
        """A new join token for the node; its certificates and any earlier token stop working."""
        token_id, token = new_token()
        with self._lock:
            self.nodes.get(node_id)
            now = self.clock()
            expires_at = now + self.join_token_ttl
            pending = JoinToken(id=token_id, mac=token_mac(self.key, token), expires_at=expires_at)
            self.credentials.put(AgentCredential(id=node_id, join_token=pending, created_at=now))
        return IssuedToken(node_id=node_id, token=token, token_id=token_id, expires_at=expires_at)

    def issue(self, node_id: str) -> str:
        """A new join token (`ID.SECRET`) for the node (see `issue_join_token`)."""
        return self.issue_join_token(node_id).token

    def verify(self, node_id: str, token: str) -> AgentCredential | None:
        """The node's credential when `token` is its pending join token, unused and unexpired; else None."""
        record = self.credentials.find(node_id)
        if record is None or not self._token_matches(record.join_token, token):
            return None
        assert record.join_token is not None
        usable = record.join_token.used_at is None and self.clock() < record.join_token.expires_at
        return record if usable else None

    def has_credential(self, node_id: str) -> bool:
        """Whether the node has a join token or a certificate (revoked ones are forgotten)."""
        return node_id in self.credentials

    # --- certificates ---------------------------------------------------------

    def enroll(self, node_id: str, token: str, csr_pem: bytes) -> bytes:
        """Join: the node's new certificate (PEM) for the CSR's key, in exchange for its join token."""
        ca = self._ca()
        with self._lock:
            record = self.credentials.find(node_id)
            pending = record.join_token if record is not None else None
            if record is None or pending is None or not self._token_matches(pending, token):
                raise _bad_token(node_id)
            now = self.clock()
            if now >= pending.expires_at:
                raise _bad_token(node_id)
            csr = _csr(csr_pem)
            key_sha256 = key_fingerprint(csr.public_key())
            current = record.certificate
            if pending.used_at is not None:
                if current is None or current.not_after <= now:
                    raise _bad_token(node_id)
                if not hmac.compare_digest(current.key_sha256, key_sha256):
                    raise EnrolledElsewhere(f"node {node_id} is enrolled with another key; issue a new join "
                                            "token to re-enroll it")
            cert = ca.sign_node(csr_pem, node_id, self.cert_lifetime, now=now)
            used = pending if pending.used_at is not None else pending.model_copy(update={"used_at": now})
            self.credentials.put(record.model_copy(update={
                "join_token": used, "certificate": _record(cert, now), "previous": current}))
        return cert_pem(cert)

    def check(self, node_id: str, pem: bytes) -> NodeCertificate:
        """Connect: the node's certificate record when `pem` may stream as `node_id`; else Unauthorized."""
        ca = self._ca()
        try:
            cert, named = ca.check_node(pem, now=self.clock())
        except PkiError as exc:
            raise Unauthorized(f"node {node_id}: {exc}") from None
        if named != node_id:
            raise Unauthorized(f"the certificate is node {named}'s, not node {node_id}'s")
        serial = serial_hex(cert)
        record = self.credentials.find(node_id)
        for known in (record.certificate, record.previous) if record is not None else ():
            if known is not None and known.serial == serial:
                return known
        raise Unauthorized(f"the certificate of node {node_id} was revoked or replaced; issue a new join token "
                           "to re-enroll it")

    def replaces_previous(self, node_id: str, serial: str) -> bool:
        """Whether `serial` is the node's current certificate while a previous one is still accepted
        (then `confirm` has something to do); reads memory only."""
        record = self.credentials.find(node_id)
        return (record is not None and record.previous is not None and record.certificate is not None
                and record.certificate.serial == serial)

    def confirm(self, node_id: str, serial: str) -> None:
        """The node connected with `serial`: when that is its current certificate, the previous one is dropped."""
        with self._lock:
            record = self.credentials.find(node_id)
            if record is not None and self.replaces_previous(node_id, serial):
                self.credentials.put(record.model_copy(update={"previous": None}))

    def renew(self, node_id: str, csr_pem: bytes, serial: str) -> bytes:
        """A new certificate (PEM) for a node whose stream is authenticated by certificate `serial`.

        The new one becomes current; `serial` stays accepted (as previous) until the node connects with it.
        """
        ca = self._ca()
        with self._lock:
            record = self.credentials.find(node_id)
            in_use = next((c for c in (record.certificate, record.previous) if c is not None and c.serial == serial),
                          None) if record is not None else None
            if record is None or in_use is None:
                raise Unauthorized(f"the certificate of node {node_id} was revoked or replaced")
            _csr(csr_pem)  # a bad CSR is InvalidInput, named as such
            now = self.clock()
            cert = ca.sign_node(csr_pem, node_id, self.cert_lifetime, now=now)
            self.credentials.put(record.model_copy(update={"certificate": _record(cert, now), "previous": in_use}))
        return cert_pem(cert)

    def revoke(self, node_id: str) -> bool:
        """Forget the node's token and certificates; False when it had none (the node must exist)."""
        with self._lock:
            self.nodes.get(node_id)
            if node_id not in self.credentials:
                return False
            self.credentials.delete(node_id)
        return True

    # --- helpers --------------------------------------------------------------

    @property
    def key(self) -> bytes:
        """The HMAC key join tokens are kept under (made on first use)."""
        if self._key is None:
            self._key = hub_secret_key(self._data_dir) if self._data_dir is not None else secrets.token_bytes(32)
        return self._key

    def _token_matches(self, pending: JoinToken | None, token: str) -> bool:
        parts = split_token(token) if token else None
        if pending is None or parts is None:
            return False
        same_id = hmac.compare_digest(parts[0], pending.id)
        same_secret = hmac.compare_digest(token_mac(self.key, token), pending.mac)
        return same_id and same_secret

    def _ca(self) -> HubCA:
        if self.ca is None:
            raise Unavailable("this hub has no certificate authority (it is not serving agents)")
        return self.ca


def _bad_token(node_id: str) -> Unauthorized:
    return Unauthorized(f"invalid or expired join token for node {node_id}")


def _csr(csr_pem: bytes) -> x509.CertificateSigningRequest:
    try:
        return load_csr(csr_pem)
    except PkiError as exc:
        raise InvalidInput(f"csr_pem: {exc}") from None


def _record(cert: x509.Certificate, now: datetime) -> NodeCertificate:
    return NodeCertificate(serial=serial_hex(cert), key_sha256=key_fingerprint(cert.public_key()),
                           not_after=cert.not_valid_after_utc, issued_at=now)
