"""CredentialService: join tokens (shown once, kept as an HMAC, single use, expiring), enrolment, the
certificate check Connect makes, renewal, rotation and revocation."""

from __future__ import annotations

import stat
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from agent.pki import PrivateKey, cert_node_id, cert_pem, load_cert, make_csr, new_key, serial_hex
from console.errors import InvalidInput, NotFound, Unauthorized, Unavailable
from console.models import AgentCredential, GameNode
from console.service import Services
from console.service.ca import HubCA
from console.service.credentials import EnrolledElsewhere
from console.service.tokens_crypto import KEY_FILE, token_mac

if TYPE_CHECKING:
    from conftest import FakeClock

BAD_TOKEN = "invalid or expired join token for node n1"


@pytest.fixture
def ca(tmp_path: Path, services: Services, clock: FakeClock) -> HubCA:
    """The hub's CA, as the hub hands it over at start; the service on the tests' clock."""
    (tmp_path / "ca").mkdir()
    authority = HubCA.load_or_create(tmp_path / "ca", now=clock())
    services.credentials.ca = authority
    services.credentials.clock = clock
    return authority


def enroll(services: Services, token: str, key: PrivateKey | None = None, node_id: str = "n1") -> bytes:
    return services.credentials.enroll(node_id, token, make_csr(key or new_key(), node_id))


# --- join tokens ---------------------------------------------------------------------------


def test_issue_shows_the_token_once_and_keeps_an_hmac(
    services: Services, make_node: Callable[..., GameNode], clock: FakeClock
) -> None:
    make_node("n1")
    services.credentials.clock = clock
    issued = services.credentials.issue_join_token("n1")
    token_id, _, secret = issued.token.partition(".")
    assert issued.token_id == token_id and len(token_id) == 12 and len(secret) == 43
    assert issued.expires_at == clock() + timedelta(hours=1)
    record = services.credentials.credentials.get("n1")
    assert record.join_token is not None and record.certificate is None
    assert record.join_token.id == token_id and record.join_token.expires_at == issued.expires_at
    assert record.join_token.mac == token_mac(services.credentials.key, issued.token)
    root = services.credentials.credentials.root
    text = (root / "n1.yaml").read_text()
    assert secret not in text and record.join_token.mac in text
    assert stat.S_IMODE((root / "n1.yaml").stat().st_mode) == 0o600
    assert stat.S_IMODE(root.stat().st_mode) == 0o700
    key_file = root.parent / KEY_FILE
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600 and key_file.read_bytes() == services.credentials.key


def test_verify(services: Services, make_node: Callable[..., GameNode]) -> None:
    make_node("n1")
    make_node("n2")
    token = services.credentials.issue("n1")
    assert services.credentials.verify("n1", token) == services.credentials.credentials.get("n1")
    assert services.credentials.verify("n1", token + "x") is None
    assert services.credentials.verify("n1", "") is None
    assert services.credentials.verify("n2", token) is None  # n2 has no token
    assert services.credentials.verify("nobody", token) is None


def test_a_stolen_record_without_the_hubs_key_checks_nothing(
    services: Services, make_node: Callable[..., GameNode]
) -> None:
    make_node("n1")
    token = services.credentials.issue("n1")
    services.credentials._key = b"k" * 32  # another hub's key: the same record no longer matches
    assert services.credentials.verify("n1", token) is None


def test_issuing_again_revokes_the_old_token(services: Services, make_node: Callable[..., GameNode]) -> None:
    make_node("n1")
    old = services.credentials.issue("n1")
    new = services.credentials.issue("n1")
    assert old != new
    assert services.credentials.verify("n1", old) is None
    assert services.credentials.verify("n1", new) is not None


def test_revoke(services: Services, make_node: Callable[..., GameNode]) -> None:
    make_node("n1")
    token = services.credentials.issue("n1")
    assert services.credentials.revoke("n1") is True
    assert services.credentials.verify("n1", token) is None
    assert not services.credentials.has_credential("n1")
    assert services.credentials.revoke("n1") is False


def test_unknown_nodes_get_no_token(services: Services) -> None:
    with pytest.raises(NotFound, match="node 'n9' not found"):
        services.credentials.issue("n9")
    with pytest.raises(NotFound):
        services.credentials.revoke("n9")


def test_deleting_a_node_revokes_its_credential(services: Services, make_node: Callable[..., GameNode]) -> None:
    make_node("n1")
    services.credentials.issue("n1")
    services.nodes.delete_node("n1")
    assert "n1" not in services.credentials.credentials
    make_node("n1")  # the same id again starts without a credential
    assert not services.credentials.has_credential("n1")


def test_a_record_from_before_certificates_loads_as_nothing(tmp_path: Path, services: Services) -> None:
    root = services.credentials.credentials.root
    (root / "old.yaml").write_text(f"id: old\nsha256: {'ab' * 32}\ncreated_at: '2024-01-01T00:00:00Z'\n")
    services.credentials.credentials.load()
    record = services.credentials.credentials.get("old")
    assert record == AgentCredential(id="old", created_at=record.created_at)
    assert record.join_token is None and record.certificate is None and not record.accepts("ab")


# --- enrolment -------------------------------------------------------------------------------


def test_a_join_token_buys_one_certificate(services: Services, make_node: Callable[..., GameNode], ca: HubCA) -> None:
    make_node("n1")
    token = services.credentials.issue("n1")
    key = new_key()
    cert = load_cert(enroll(services, token, key))
    assert cert_node_id(cert) == "n1" and cert.public_key() == key.public_key()
    again = enroll(services, token, key)  # the same key again: its certificate again (a retried Join)
    assert services.credentials.check("n1", again).serial == serial_hex(load_cert(again))
    record = services.credentials.credentials.get("n1")
    assert record.join_token is not None and record.join_token.used_at is not None
    assert services.credentials.verify("n1", token) is None  # used
    with pytest.raises(EnrolledElsewhere, match="node n1 is enrolled with another key; issue a new join token"):
        enroll(services, token)  # used: not for another key


def test_another_key_is_denied_until_a_new_token_is_issued(
    services: Services, make_node: Callable[..., GameNode], ca: HubCA
) -> None:
    make_node("n1")
    first = enroll(services, services.credentials.issue("n1"))
    other = new_key()
    token = services.credentials.issue("n1")  # re-issuing revokes the first certificate
    with pytest.raises(Unauthorized, match="revoked or replaced"):
        services.credentials.check("n1", first)
    second = enroll(services, token, other)
    assert services.credentials.check("n1", second).serial == serial_hex(load_cert(second))
    with pytest.raises(Unauthorized):
        services.credentials.check("n1", first)


def test_an_expired_token_is_refused(
    services: Services, make_node: Callable[..., GameNode], ca: HubCA, clock: FakeClock
) -> None:
    make_node("n1")
    services.credentials.join_token_ttl = timedelta(minutes=10)
    token = services.credentials.issue("n1")
    clock.advance(599)
    assert services.credentials.verify("n1", token) is not None
    clock.advance(1)
    assert services.credentials.verify("n1", token) is None
    with pytest.raises(Unauthorized) as refused:
        enroll(services, token)
    assert refused.value.message == BAD_TOKEN


@pytest.mark.parametrize("case", ["wrong secret", "wrong id", "not ID.SECRET", "empty", "unknown node", "no token"])
def test_a_wrong_token_says_the_same_thing_whatever_is_wrong(
    services: Services, make_node: Callable[..., GameNode], ca: HubCA, case: str
) -> None:
    make_node("n1")
    make_node("n2")
    token = services.credentials.issue("n1")
    token_id, _, secret = token.partition(".")
    node_id = "n1"
    if case == "wrong secret":
        token = f"{token_id}.{secret[:-1]}x"
    elif case == "wrong id":
        token = f"{'0' * 12}.{secret}"
    elif case == "not ID.SECRET":
        token = secret
    elif case == "empty":
        token = ""
    else:
        node_id = "ghost" if case == "unknown node" else "n2"
    with pytest.raises(Unauthorized) as refused:
        enroll(services, token, node_id=node_id)
    assert refused.value.message == f"invalid or expired join token for node {node_id}"
    assert secret not in refused.value.message


def test_a_bad_csr_is_invalid_input(services: Services, make_node: Callable[..., GameNode], ca: HubCA) -> None:
    make_node("n1")
    token = services.credentials.issue("n1")
    with pytest.raises(InvalidInput, match="csr_pem: csr: not a PEM certificate request"):
        services.credentials.enroll("n1", token, b"nonsense")
    assert services.credentials.verify("n1", token) is not None  # not used up


def test_without_a_ca_tokens_are_issued_but_not_used(services: Services, make_node: Callable[..., GameNode]) -> None:
    make_node("n1")
    token = services.credentials.issue("n1")
    with pytest.raises(Unavailable, match="no certificate authority"):
        enroll(services, token)


# --- the certificate check -----------------------------------------------------------------


def test_check_wants_this_cas_current_certificate_for_that_node(
    services: Services, make_node: Callable[..., GameNode], ca: HubCA, clock: FakeClock, tmp_path: Path
) -> None:
    make_node("n1")
    make_node("n2")
    pem = enroll(services, services.credentials.issue("n1"))
    assert services.credentials.check("n1", pem).serial == serial_hex(load_cert(pem))
    with pytest.raises(Unauthorized, match="the certificate is node n1's, not node n2's"):
        services.credentials.check("n2", pem)
    (tmp_path / "other").mkdir()
    stranger = HubCA.load_or_create(tmp_path / "other", now=clock()).sign_node(make_csr(new_key(), "n1"), "n1")

    with pytest.raises(Unauthorized, match="not issued by this hub's CA"):
        services.credentials.check("n1", cert_pem(stranger))
    clock.advance(timedelta(days=8).total_seconds())
    with pytest.raises(Unauthorized, match="not valid now"):
        services.credentials.check("n1", pem)


# --- renewal -------------------------------------------------------------------------------


def test_renewal_keeps_the_old_certificate_until_the_new_one_is_used(
    services: Services, make_node: Callable[..., GameNode], ca: HubCA
) -> None:
    make_node("n1")
    old = enroll(services, services.credentials.issue("n1"))
    old_serial = services.credentials.check("n1", old).serial
    new = services.credentials.renew("n1", make_csr(new_key(), "whatever"), old_serial)
    assert cert_node_id(load_cert(new)) == "n1"
    new_serial = services.credentials.check("n1", new).serial
    assert new_serial != old_serial
    assert services.credentials.check("n1", old).serial == old_serial  # still accepted
    assert not services.credentials.replaces_previous("n1", old_serial)
    assert services.credentials.replaces_previous("n1", new_serial)
    services.credentials.confirm("n1", new_serial)  # the node connected with the new one
    with pytest.raises(Unauthorized, match="revoked or replaced"):
        services.credentials.check("n1", old)
    with pytest.raises(Unauthorized):
        services.credentials.renew("n1", make_csr(new_key(), "n1"), old_serial)  # a stream on a dropped one


def test_renewal_wants_a_good_csr(services: Services, make_node: Callable[..., GameNode], ca: HubCA) -> None:
    make_node("n1")
    serial = services.credentials.check("n1", enroll(services, services.credentials.issue("n1"))).serial
    with pytest.raises(InvalidInput, match="csr_pem"):
        services.credentials.renew("n1", b"-----BEGIN CERTIFICATE REQUEST-----\n", serial)


def test_merge_inventory_writes_only_changes(services: Services, make_node: Callable[..., GameNode]) -> None:
    node = make_node("n1", hardware={"cpu": {"cores": 4}, "note": "mine"}, network={"ip": "10.0.0.1"})
    assert services.nodes.merge_inventory("n1", {"cpu": {"cores": 4}}, None) is node
    merged = services.nodes.merge_inventory("n1", {"cpu": {"cores": 8}, "memory_mb": 1024}, {"mtu": 9000})
    assert merged.hardware == {"cpu": {"cores": 8}, "note": "mine", "memory_mb": 1024}
    assert merged.network == {"ip": "10.0.0.1", "mtu": 9000}
    assert services.nodes.get_node("n1") == merged
