"""The hub's own certificate authority: made on first start, in the data directory.

    DATA_DIR/ca.pem        the CA certificate (agents pin it: `gamenode agent --ca`; public)
    DATA_DIR/ca-key.pem    its key (0600)
    DATA_DIR/hub.pem       the hub's TLS server certificate, signed by the CA
    DATA_DIR/hub-key.pem   its key (0600)

The CA lives ten years. The server certificate names localhost, 127.0.0.1,
::1, this host's name and every host the hub was told it is reached as
(`hosts`: its listen and advertise addresses); it is made again when a host
is missing from it or it has less than a third of its life left. Node client
certificates (`sign_node`) carry the node id as CN and are valid for
`lifetime` (default 7 days). Every file is written whole (`write_atomic`: temp
file, fsync, rename) so a crash never leaves half a key.
"""

from __future__ import annotations

import ipaddress
import socket
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from agent._files import write_atomic
from agent.pki import PkiError, PrivateKey, cert_node_id, cert_pem, key_pem, load_cert, load_csr, load_key, new_key

__all__ = ["CA_FILE", "DEFAULT_NODE_CERT_LIFETIME", "HubCA"]

CA_FILE = "ca.pem"
CA_KEY_FILE = "ca-key.pem"
SERVER_FILE = "hub.pem"
SERVER_KEY_FILE = "hub-key.pem"
CA_LIFETIME = timedelta(days=3650)
SERVER_LIFETIME = timedelta(days=365)
DEFAULT_NODE_CERT_LIFETIME = timedelta(days=7)
BACKDATE = timedelta(minutes=5)
"""Certificates start a little in the past: a node whose clock lags still accepts them."""


def _san(host: str) -> x509.GeneralName:
    try:
        return x509.IPAddress(ipaddress.ip_address(host))
    except ValueError:
        return x509.DNSName(host)


def _names(cert: x509.Certificate) -> set[str]:
    try:
        ext = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return set()
    return {str(n) for n in ext.get_values_for_type(x509.DNSName)} | {
        str(n) for n in ext.get_values_for_type(x509.IPAddress)}


@dataclass
class HubCA:
    cert: x509.Certificate
    key: PrivateKey
    server_cert: x509.Certificate
    server_key: PrivateKey
    ca_path: Path

    @property
    def ca_pem(self) -> bytes:
        return cert_pem(self.cert)

    @property
    def server_pem(self) -> bytes:
        """The server certificate then the CA: the chain a TLS server hands out."""
        return cert_pem(self.server_cert) + self.ca_pem

    @property
    def server_key_pem(self) -> bytes:
        return key_pem(self.server_key)

    @classmethod
    def load_or_create(cls, data_dir: Path, hosts: tuple[str, ...] = (), now: datetime | None = None) -> HubCA:
        now = now or datetime.now(UTC)
        ca_path, ca_key_path = data_dir / CA_FILE, data_dir / CA_KEY_FILE
        if ca_path.exists() and ca_key_path.exists():
            cert = load_cert(ca_path.read_bytes(), str(ca_path))
            key = load_key(ca_key_path.read_bytes(), str(ca_key_path))
        else:
            key = new_key()
            name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"gamenode hub CA ({socket.gethostname()})")])
            cert = (
                x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
                .serial_number(x509.random_serial_number())
                .not_valid_before(now - BACKDATE).not_valid_after(now + CA_LIFETIME)
                .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
                .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                             content_commitment=False, key_encipherment=False,
                                             data_encipherment=False, key_agreement=False,
                                             encipher_only=False, decipher_only=False), critical=True)
                .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
                .sign(key, hashes.SHA256())
            )
            write_atomic(ca_key_path, key_pem(key), 0o600)
            write_atomic(ca_path, cert_pem(cert), 0o644)
        server_path, server_key_path = data_dir / SERVER_FILE, data_dir / SERVER_KEY_FILE
        wanted = {"localhost", "127.0.0.1", "::1", socket.gethostname(), *(h for h in hosts if h)}
        wanted = {str(ipaddress.ip_address(h)) if _is_ip(h) else h for h in wanted}
        server = None
        if server_path.exists() and server_key_path.exists():
            server = load_cert(server_path.read_bytes(), str(server_path))
            server_key = load_key(server_key_path.read_bytes(), str(server_key_path))
            fresh = server.not_valid_after_utc - now > SERVER_LIFETIME / 3
            if not (fresh and wanted <= _names(server) and _issued_by(server, cert)):
                server = None
        if server is None:
            server_key = new_key()
            server = (
                x509.CertificateBuilder()
                .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "gamenode hub")]))
                .issuer_name(cert.subject).public_key(server_key.public_key())
                .serial_number(x509.random_serial_number())
                .not_valid_before(now - BACKDATE).not_valid_after(now + SERVER_LIFETIME)
                .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
                .add_extension(x509.SubjectAlternativeName([_san(h) for h in sorted(wanted)]), critical=False)
                .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
                .sign(key, hashes.SHA256())
            )
            write_atomic(server_key_path, key_pem(server_key), 0o600)
            write_atomic(server_path, cert_pem(server), 0o644)
        return cls(cert=cert, key=key, server_cert=server, server_key=server_key, ca_path=ca_path)

    def sign_node(self, csr_pem: bytes, node_id: str, lifetime: timedelta = DEFAULT_NODE_CERT_LIFETIME,
                  now: datetime | None = None) -> x509.Certificate:
        """A client certificate for `node_id` over the CSR's key (the CSR's own subject is ignored)."""
        now = now or datetime.now(UTC)
        csr = load_csr(csr_pem)
        return (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, node_id)]))
            .issuer_name(self.cert.subject).public_key(csr.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - BACKDATE).not_valid_after(now + lifetime)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
            .sign(self.key, hashes.SHA256())
        )

    def check_node(self, pem: bytes, now: datetime | None = None) -> tuple[x509.Certificate, str]:
        """The node certificate and the node id it names, when this CA issued it and it is valid now."""
        now = now or datetime.now(UTC)
        cert = load_cert(pem)
        if not _issued_by(cert, self.cert):
            raise PkiError("certificate: not issued by this hub's CA")
        if not cert.not_valid_before_utc <= now <= cert.not_valid_after_utc:
            raise PkiError(f"certificate: not valid now (valid {cert.not_valid_before_utc:%Y-%m-%d %H:%M} to "
                           f"{cert.not_valid_after_utc:%Y-%m-%d %H:%M} UTC)")
        node_id = cert_node_id(cert)
        if not node_id:
            raise PkiError("certificate: names no node (no CN)")
        return cert, node_id


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def _issued_by(cert: x509.Certificate, issuer: x509.Certificate) -> bool:
    try:
        cert.verify_directly_issued_by(issuer)
    except Exception:  # InvalidSignature, a different issuer name, an unsupported key
        return False
    return True
