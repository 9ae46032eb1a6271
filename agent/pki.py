"""The node identity's crypto, shared by the agent (which holds the key) and the hub (which checks it).

A node's identity is an EC P-256 key made on the node, never sent anywhere,
and a client certificate the hub's CA signed for it (CN = node id). Only a
CSR travels: in `Join` (first start, with a join token) and in the live
stream's `RenewCertificate` (at about two thirds of the certificate's life).

On an mTLS stream the TLS layer proves the key. On a plaintext (`--insecure`)
hub there is no TLS, so the Hello carries the certificate and a signature by
the key over `proof_message(node_id, time_ms)`; the hub accepts it within
`PROOF_SKEW_S` of its own clock.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

__all__ = [
    "PROOF_SKEW_S",
    "PkiError",
    "cert_node_id",
    "cert_pem",
    "key_fingerprint",
    "key_pem",
    "load_cert",
    "load_csr",
    "load_key",
    "make_csr",
    "new_key",
    "proof_message",
    "renew_at",
    "serial_hex",
    "sign_proof",
    "verify_proof",
]

PROOF_SKEW_S = 300.0
"""How far (seconds) a Hello proof's time may be from the hub's clock."""

PrivateKey = ec.EllipticCurvePrivateKey


class PkiError(ValueError):
    """A key, certificate or CSR that cannot be read or does not fit; the message says which and why."""


def new_key() -> PrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def key_pem(key: PrivateKey) -> bytes:
    """PKCS#8 PEM, unencrypted: the file holding it is 0600."""
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def load_key(pem: bytes, what: str = "key") -> PrivateKey:
    try:
        key = serialization.load_pem_private_key(pem, password=None)
    except (ValueError, TypeError) as exc:
        raise PkiError(f"{what}: not a PEM private key ({exc})") from None
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise PkiError(f"{what}: expected an EC key, got {type(key).__name__}")
    return key


def make_csr(key: PrivateKey, node_id: str) -> bytes:
    """A PEM CSR for `node_id` (CN), signed by `key`."""
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, node_id)])
    csr = x509.CertificateSigningRequestBuilder().subject_name(name).sign(key, hashes.SHA256())
    return csr.public_bytes(serialization.Encoding.PEM)


def load_csr(pem: bytes) -> x509.CertificateSigningRequest:
    try:
        csr = x509.load_pem_x509_csr(pem)
    except ValueError as exc:
        raise PkiError(f"csr: not a PEM certificate request ({exc})") from None
    if not csr.is_signature_valid:
        raise PkiError("csr: its signature does not match its key")
    if not isinstance(csr.public_key(), ec.EllipticCurvePublicKey):
        raise PkiError("csr: expected an EC key")
    return csr


def load_cert(pem: bytes, what: str = "certificate") -> x509.Certificate:
    try:
        return x509.load_pem_x509_certificate(pem)
    except ValueError as exc:
        raise PkiError(f"{what}: not a PEM certificate ({exc})") from None


def cert_pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def cert_node_id(cert: x509.Certificate) -> str:
    """The node id a node certificate names (its CN); '' when it has none."""
    names = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    value = names[0].value if names else ""
    return value if isinstance(value, str) else value.decode()


def serial_hex(cert: x509.Certificate) -> str:
    return format(cert.serial_number, "x")


def key_fingerprint(public_key: ec.EllipticCurvePublicKey | object) -> str:
    """Hex SHA-256 of the public key's SubjectPublicKeyInfo: the same key, the same fingerprint."""
    if not isinstance(public_key, ec.EllipticCurvePublicKey):
        raise PkiError(f"expected an EC public key, got {type(public_key).__name__}")
    der = public_key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return hashlib.sha256(der).hexdigest()


def renew_at(cert: x509.Certificate) -> datetime:
    """When to ask for a new certificate: two thirds into its validity."""
    start, end = cert.not_valid_before_utc, cert.not_valid_after_utc
    return start + (end - start) * 2 / 3


def proof_message(node_id: str, time_ms: int) -> bytes:
    return f"gamenode-hello\n{node_id}\n{time_ms}".encode()


def sign_proof(key: PrivateKey, node_id: str, time_ms: int) -> bytes:
    return key.sign(proof_message(node_id, time_ms), ec.ECDSA(hashes.SHA256()))


def verify_proof(cert: x509.Certificate, node_id: str, time_ms: int, proof: bytes,
                 now: datetime | None = None) -> str | None:
    """None when `proof` is the certificate's key signing this Hello recently; else why not."""
    now = now or datetime.now(UTC)
    if abs(now.timestamp() - time_ms / 1000) > PROOF_SKEW_S:
        return f"the hello's proof time is more than {PROOF_SKEW_S:g} s from the hub's clock"
    public_key = cert.public_key()
    if not isinstance(public_key, ec.EllipticCurvePublicKey):
        return "the certificate's key is not an EC key"
    try:
        public_key.verify(proof, proof_message(node_id, time_ms), ec.ECDSA(hashes.SHA256()))
    except InvalidSignature:
        return "the hello's proof is not signed by the certificate's key"
    return None
