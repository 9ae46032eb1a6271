"""CredentialService: issue (shown once, stored hashed), rotate, revoke, verify."""

from __future__ import annotations

import hashlib
import stat
from collections.abc import Callable

import pytest

from console.errors import NotFound
from console.models import GameNode
from console.service import Services
from console.service.credentials import token_hash


def test_issue_stores_the_hash_and_never_the_token(services: Services, make_node: Callable[..., GameNode]) -> None:
    make_node("n1")
    token = services.credentials.issue("n1")
    assert len(token) == 43  # 32 random bytes, URL-safe base64
    record = services.credentials.credentials.get("n1")
    assert record.sha256 == hashlib.sha256(token.encode()).hexdigest() == token_hash(token)
    root = services.credentials.credentials.root
    assert token not in (root / "n1.yaml").read_text()
    assert stat.S_IMODE((root / "n1.yaml").stat().st_mode) == 0o600
    assert stat.S_IMODE(root.stat().st_mode) == 0o700


def test_verify(services: Services, make_node: Callable[..., GameNode]) -> None:
    make_node("n1")
    make_node("n2")
    token = services.credentials.issue("n1")
    assert services.credentials.verify("n1", token) == services.credentials.credentials.get("n1")
    assert services.credentials.verify("n1", token + "x") is None
    assert services.credentials.verify("n1", "") is None
    assert services.credentials.verify("n2", token) is None  # n2 has no credential
    assert services.credentials.verify("nobody", token) is None


def test_rotating_revokes_the_old_token(services: Services, make_node: Callable[..., GameNode]) -> None:
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


def test_unknown_nodes_get_no_credential(services: Services) -> None:
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


def test_merge_inventory_writes_only_changes(services: Services, make_node: Callable[..., GameNode]) -> None:
    node = make_node("n1", hardware={"cpu": {"cores": 4}, "note": "mine"}, network={"ip": "10.0.0.1"})
    assert services.nodes.merge_inventory("n1", {"cpu": {"cores": 4}}, None) is node
    merged = services.nodes.merge_inventory("n1", {"cpu": {"cores": 8}, "memory_mb": 1024}, {"mtu": 9000})
    assert merged.hardware == {"cpu": {"cores": 8}, "note": "mine", "memory_mb": 1024}
    assert merged.network == {"ip": "10.0.0.1", "mtu": 9000}
    assert services.nodes.get_node("n1") == merged
