"""`agent.identity`: the node's key, certificate, pinned CA and used join token in the state dir."""

from __future__ import annotations

import os
import stat
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from agent import pki
from agent.errors import StateError
from agent.identity import IdentityStore
from console.service.ca import HubCA


@pytest.fixture(scope="module")
def ca(tmp_path_factory: pytest.TempPathFactory) -> HubCA:
    return HubCA.load_or_create(tmp_path_factory.mktemp("hub"))


def _signed(ca: HubCA, node_id: str = "n1", lifetime: timedelta = timedelta(days=7),
            key: pki.PrivateKey | None = None) -> tuple[pki.PrivateKey, bytes]:
    key = key or pki.new_key()
    return key, pki.cert_pem(ca.sign_node(pki.make_csr(key, node_id), node_id, lifetime))


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_saved_identity_loads_back_with_private_modes(ca: HubCA, tmp_path: Path) -> None:
    store = IdentityStore(tmp_path)
    key, cert_pem = _signed(ca)
    saved = store.save(key, cert_pem, "n1")
    store.save_ca(ca.ca_pem)

    loaded = store.load()
    assert loaded is not None
    assert (loaded.node_id, loaded.serial, loaded.cert_pem) == ("n1", saved.serial, cert_pem)
    assert loaded.key_pem == pki.key_pem(key)
    assert store.load_ca() == ca.ca_pem
    assert (_mode(store.dir), _mode(store.key_path), _mode(store.cert_path), _mode(store.ca_path)) == \
        (0o700, 0o600, 0o644, 0o644)
    assert sorted(p.name for p in store.dir.iterdir()) == ["ca.pem", "cert.pem", "key.pem"]  # no temp files left
    usable, problem = store.usable("n1")
    assert usable is not None and (usable.serial, problem) == (saved.serial, "")


def test_a_renewal_replaces_key_and_certificate(ca: HubCA, tmp_path: Path) -> None:
    store = IdentityStore(tmp_path)
    first = store.save(*_signed(ca), "n1")
    second = store.save(*_signed(ca), "n1")
    loaded = store.load()
    assert loaded is not None and loaded.serial == second.serial != first.serial
    assert loaded.key_pem == second.key_pem != first.key_pem


def test_no_certificate_yet(tmp_path: Path) -> None:
    store = IdentityStore(tmp_path)
    assert store.load() is None
    identity, problem = store.usable("n1")
    assert identity is None and "no certificate" in problem
    assert store.load_ca() is None


def test_an_expired_or_foreign_certificate_is_not_usable(ca: HubCA, tmp_path: Path) -> None:
    store = IdentityStore(tmp_path)
    store.save(*_signed(ca, "n1", timedelta(days=1)), "n1")
    identity, problem = store.usable("n1", now=datetime.now(UTC) + timedelta(days=2))
    assert identity is not None and "expired" in problem
    identity, problem = store.usable("n2")
    assert identity is None and "node 'n1'" in problem and "not 'n2'" in problem


def test_a_key_that_does_not_match_the_certificate_is_reported(ca: HubCA, tmp_path: Path) -> None:
    store = IdentityStore(tmp_path)
    store.save(*_signed(ca), "n1")
    store.key_path.write_bytes(pki.key_pem(pki.new_key()))  # as if a renewal stopped between the two files
    with pytest.raises(StateError, match="does not match"):
        store.load()
    identity, problem = store.usable("n1")
    assert identity is None and "does not match" in problem
    store.key_path.unlink()
    assert "is missing" in store.usable("n1")[1]


def test_a_renewal_stopped_half_way_leaves_a_usable_pair(ca: HubCA, tmp_path: Path) -> None:
    """`save` writes the next pair beside the current one first; whichever step a crash stops it at, the next
    load finds a key and a certificate that belong together."""
    store = IdentityStore(tmp_path)
    old = store.save(*_signed(ca), "n1")
    new_key, new_cert = _signed(ca)
    next_key, next_cert = store.dir / "next-key.pem", store.dir / "next-cert.pem"

    next_key.write_bytes(pki.key_pem(new_key))  # stopped before the next certificate was written: the old pair
    assert store.load().serial == old.serial  # type: ignore[union-attr]
    assert not next_key.exists()

    next_key.write_bytes(pki.key_pem(new_key))  # both written, nothing moved yet: the new pair
    next_cert.write_bytes(new_cert)
    renewed = store.load()
    assert renewed is not None and renewed.serial != old.serial
    assert not next_key.exists() and not next_cert.exists()

    newer_key, newer_cert = _signed(ca)  # the key moved, the certificate not yet: the new pair
    store.key_path.write_bytes(pki.key_pem(newer_key))
    next_cert.write_bytes(newer_cert)
    assert store.load().cert_pem == newer_cert  # type: ignore[union-attr]


def test_save_refuses_a_certificate_for_another_key_or_node(ca: HubCA, tmp_path: Path) -> None:
    store = IdentityStore(tmp_path)
    _, cert_pem = _signed(ca)
    with pytest.raises(StateError, match="not for the key"):
        store.save(pki.new_key(), cert_pem, "n1")
    key, cert_pem = _signed(ca, "n2")
    with pytest.raises(StateError, match="names node 'n2', not 'n1'"):
        store.save(key, cert_pem, "n1")
    assert not store.cert_path.exists() and not store.key_path.exists()


def test_renewal_is_due_two_thirds_into_the_life_left_when_obtained(ca: HubCA, tmp_path: Path) -> None:
    store = IdentityStore(tmp_path)
    before = datetime.now(UTC)
    identity = store.save(*_signed(ca, lifetime=timedelta(seconds=30)), "n1")
    # the certificate starts minutes in the past, so `pki.renew_at` alone is already due: counted from now it is not
    assert pki.renew_at(identity.cert) < before
    assert before + timedelta(seconds=15) < identity.renew_due() <= identity.not_after
    old = (before - timedelta(days=30)).timestamp()
    os.utime(store.cert_path, (old, old))  # a certificate on disk for long: its own two thirds count
    loaded = store.load()
    assert loaded is not None and loaded.renew_due() == pki.renew_at(loaded.cert)


def test_a_join_token_is_remembered_as_used_without_keeping_it(tmp_path: Path) -> None:
    store = IdentityStore(tmp_path)
    token = "a1b2c3d4e5f6.s3cret-join-token"
    assert not store.token_used(token)
    store.mark_used(token)
    assert store.token_used(token) and store.token_used(f" {token}\n")
    assert not store.token_used("a1b2c3d4e5f6.another")
    assert "s3cret" not in store.joined_path.read_text()
    assert _mode(store.joined_path) == 0o600
