"""ApiTokenService: tokens shown once and kept only as an HMAC, roles, expiry, revocation, the local admin token."""

from __future__ import annotations

import stat
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from console.errors import InvalidInput, NotFound
from console.models import ApiToken, Role
from console.service import Services
from console.service.api_tokens import ADMIN_TOKEN_FILE, LOCAL_ADMIN_NAME, read_token_file
from console.store import Stores


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2030, 1, 1, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def stores(tmp_path: Path) -> Iterator[Stores]:
    stores = Stores.open(tmp_path / "data")
    yield stores
    stores.close()


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def services(stores: Stores, clock: Clock) -> Services:
    services = Services.over(stores)
    services.api_tokens.clock = clock
    return services


def test_roles_are_ordered_by_power_not_by_name() -> None:
    assert Role.VIEWER < Role.OPERATOR < Role.ADMIN
    assert sorted([Role.ADMIN, Role.VIEWER, Role.OPERATOR]) == [Role.VIEWER, Role.OPERATOR, Role.ADMIN]
    assert Role.ADMIN.covers(Role.OPERATOR) and Role.OPERATOR.covers(Role.OPERATOR)
    assert not Role.VIEWER.covers(Role.OPERATOR)
    assert max(Role.OPERATOR, Role.ADMIN, Role.VIEWER) is Role.ADMIN


def test_a_token_is_shown_once_and_stored_as_an_hmac(services: Services, tmp_path: Path) -> None:
    record, token = services.api_tokens.create("ci-bot", "operator", created_by="alice")
    token_id, _, secret = token.partition(".")
    assert record.id == token_id and record.role is Role.OPERATOR and record.created_by == "alice"
    assert len(secret) >= 40

    for path in (tmp_path / "data").rglob("*"):  # the YAML, the store's index and any other file
        if path.is_file():
            assert secret.encode() not in path.read_bytes(), path
    stored = (tmp_path / "data" / "api_tokens" / f"{token_id}.yaml").read_text()
    assert f"mac: {record.mac}" in stored and "ci-bot" in stored
    assert stat.S_IMODE((tmp_path / "data" / "api_tokens").stat().st_mode) == 0o700
    assert stat.S_IMODE((tmp_path / "data" / "hub-secret.key").stat().st_mode) == 0o600


def test_authenticate_finds_the_token_and_refuses_anything_else(services: Services) -> None:
    record, token = services.api_tokens.create("viewer", Role.VIEWER)
    assert services.api_tokens.authenticate(token) == record
    token_id, _, secret = token.partition(".")
    for wrong in ("", token + "x", f"{token_id}.{secret[:-1]}", f"ffffffffffff.{secret}", secret, token_id,
                  "not a token", "." * 300):
        assert services.api_tokens.authenticate(wrong) is None, wrong


def test_a_token_survives_a_restart_of_its_data_dir(tmp_path: Path) -> None:
    stores = Stores.open(tmp_path / "data")
    record, token = Services.over(stores).api_tokens.create("ops", "admin")
    stores.close()
    stores = Stores.open(tmp_path / "data")
    try:
        assert Services.over(stores).api_tokens.authenticate(token) == record
    finally:
        stores.close()


def test_an_expired_token_is_refused(services: Services, clock: Clock) -> None:
    record, token = services.api_tokens.create("short", "viewer", ttl=timedelta(hours=1))
    assert record.expires_at == clock.now + timedelta(hours=1)
    clock.now += timedelta(minutes=59)
    assert services.api_tokens.authenticate(token) == record
    clock.now += timedelta(minutes=1)
    assert services.api_tokens.authenticate(token) is None
    assert record.expired(clock.now) and services.api_tokens.list() == [record]  # listed until revoked


def test_a_revoked_token_stops_working(services: Services) -> None:
    record, token = services.api_tokens.create("gone", "admin")
    assert services.api_tokens.revoke(record.id) == record
    assert services.api_tokens.authenticate(token) is None
    assert services.api_tokens.list() == []
    with pytest.raises(NotFound, match=f"API token '{record.id}' not found"):
        services.api_tokens.revoke(record.id)


@pytest.mark.parametrize(
    ("name", "role", "ttl", "mentions"),
    [
        ("", "viewer", None, "name"),
        ("x" * 129, "viewer", None, "name"),
        ("ok", "root", None, "role"),
        ("ok", "viewer", timedelta(0), "ttl"),
        ("ok", "viewer", timedelta(days=-1), "ttl"),
    ],
)
def test_bad_input_is_refused_with_the_field(
    services: Services, name: str, role: str, ttl: timedelta | None, mentions: str
) -> None:
    with pytest.raises(InvalidInput, match=mentions):
        services.api_tokens.create(name, role, ttl=ttl)
    assert services.api_tokens.list() == []


def test_list_is_oldest_first(services: Services, clock: Clock) -> None:
    made = []
    for name in ("c", "a", "b"):
        made.append(services.api_tokens.create(name, "viewer")[0])
        clock.now += timedelta(seconds=1)
    assert [t.name for t in services.api_tokens.list()] == ["c", "a", "b"]
    assert all(isinstance(t, ApiToken) for t in made)


def test_the_local_admin_token_is_written_once_0600(services: Services, tmp_path: Path) -> None:
    path = services.api_tokens.ensure_admin_token(tmp_path / "data")
    assert path == tmp_path / "data" / ADMIN_TOKEN_FILE
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    token = read_token_file(path)
    assert token is not None
    record = services.api_tokens.authenticate(token)
    assert record is not None and record.role is Role.ADMIN and record.name == LOCAL_ADMIN_NAME

    services.api_tokens.ensure_admin_token(tmp_path / "data")  # present: left alone
    assert read_token_file(path) == token and len(services.api_tokens.list()) == 1


def test_a_lost_admin_token_file_is_replaced_and_its_record_dropped(services: Services, tmp_path: Path) -> None:
    path = services.api_tokens.ensure_admin_token(tmp_path / "data")
    old = read_token_file(path)
    path.unlink()
    services.api_tokens.ensure_admin_token(tmp_path / "data")
    new = read_token_file(path)
    assert old and new and new != old
    assert services.api_tokens.authenticate(old) is None
    assert [t.name for t in services.api_tokens.list()] == [LOCAL_ADMIN_NAME]
