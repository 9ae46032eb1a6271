"""REST auth in-process: every route's role, 401 vs 403, the tokens and audit APIs, the audit of changes."""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI

from console.hub.app import create_app
from console.hub.auth import OPEN_PATHS, Authenticator, route_roles
from console.models import Role
from console.service import Services
from console.store import Stores

V, O, A = Role.VIEWER, Role.OPERATOR, Role.ADMIN  # noqa: E741

ROLES: dict[tuple[str, str], Role] = {
    ("GET", "/api/v1/nodes"): V, ("POST", "/api/v1/nodes"): A,
    ("GET", "/api/v1/nodes/{node_id}"): V, ("PUT", "/api/v1/nodes/{node_id}"): A,
    ("DELETE", "/api/v1/nodes/{node_id}"): A, ("PUT", "/api/v1/nodes/{node_id}/status"): O,
    ("GET", "/api/v1/nodes/{node_id}/history"): V, ("PATCH", "/api/v1/nodes/{node_id}/labels"): A,
    ("GET", "/api/v1/nodes/{node_id}/resources"): V, ("GET", "/api/v1/nodes/{node_id}/instances"): V,
    ("POST", "/api/v1/nodes/{node_id}/token"): A, ("DELETE", "/api/v1/nodes/{node_id}/token"): A,
    ("GET", "/api/v1/nodes/{node_id}/metrics"): V, ("POST", "/api/v1/nodes/{node_id}/ping"): O,
    ("GET", "/api/v1/instances"): V, ("POST", "/api/v1/instances"): O, ("POST", "/api/v1/instances/register"): O,
    ("GET", "/api/v1/instances/{instance_id}"): V, ("PUT", "/api/v1/instances/{instance_id}"): O,
    ("PUT", "/api/v1/instances/{instance_id}/state"): O, ("POST", "/api/v1/instances/{instance_id}/actions"): O,
    ("DELETE", "/api/v1/instances/{instance_id}"): O,
    ("GET", "/api/v1/gamecards"): V, ("POST", "/api/v1/gamecards"): A, ("GET", "/api/v1/gamecards/{card_id}"): V,
    ("PUT", "/api/v1/gamecards/{card_id}"): A, ("DELETE", "/api/v1/gamecards/{card_id}"): A,
    ("GET", "/api/v1/gamecards/{card_id}/versions"): V, ("POST", "/api/v1/gamecards/{card_id}/versions"): A,
    ("PUT", "/api/v1/gamecards/{card_id}/versions/{version}/status"): A,
    ("DELETE", "/api/v1/gamecards/{card_id}/versions/{version}"): A,
    ("GET", "/api/v1/gamecards/{card_id}/default-version"): V,
    ("PUT", "/api/v1/gamecards/{card_id}/default-version"): A,
    ("GET", "/api/v1/platforms"): V, ("POST", "/api/v1/platforms"): A,
    ("GET", "/api/v1/platforms/{platform_id}"): V, ("PUT", "/api/v1/platforms/{platform_id}"): A,
    ("DELETE", "/api/v1/platforms/{platform_id}"): A, ("PUT", "/api/v1/platforms/{platform_id}/state"): A,
    ("GET", "/api/v1/platforms/{platform_id}/config"): V, ("PUT", "/api/v1/platforms/{platform_id}/config"): A,
    ("PATCH", "/api/v1/platforms/{platform_id}/config"): A,
    ("GET", "/api/v1/platforms/{platform_id}/config/{key}"): V,
    ("PUT", "/api/v1/platforms/{platform_id}/config/{key}"): A,
    ("DELETE", "/api/v1/platforms/{platform_id}/config/{key}"): A,
    ("GET", "/api/v1/pipelines"): V, ("GET", "/api/v1/pipelines/{name}"): V,
    ("POST", "/api/v1/nodes/{node_id}/pipelines"): O, ("GET", "/api/v1/runs"): V,
    ("GET", "/api/v1/runs/{run_id}"): V, ("POST", "/api/v1/runs/{run_id}/cancel"): O,
    ("GET", "/api/v1/logs"): V,
    ("POST", "/api/v1/rollouts"): A, ("GET", "/api/v1/rollouts"): V, ("GET", "/api/v1/rollouts/{rollout_id}"): V,
    ("POST", "/api/v1/rollouts/{rollout_id}/cancel"): A,
    ("GET", "/api/v1/nodes/{node_id}/ssh/host-key"): A, ("POST", "/api/v1/nodes/{node_id}/ssh/trust"): A,
    ("POST", "/api/v1/tokens"): A, ("GET", "/api/v1/tokens"): A, ("DELETE", "/api/v1/tokens/{token_id}"): A,
    ("GET", "/api/v1/audit"): A,
    ("GET", "/metrics"): V,
}
"""The role each route needs: reads are viewer's; what an operator or admin may change is in the contract."""

MUTATING = {"POST", "PUT", "PATCH", "DELETE"}


@pytest.fixture
def stores(tmp_path: Path) -> Iterator[Stores]:
    stores = Stores.open(tmp_path / "data")
    yield stores
    stores.close()


@pytest.fixture
def services(stores: Stores) -> Services:
    return Services.over(stores)


@pytest.fixture
def app(services: Services) -> FastAPI:
    return create_app(services, auth=Authenticator(services.api_tokens))


@pytest.fixture
async def anonymous(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as client:
        yield client


def as_role(app: FastAPI, services: Services, role: Role, name: str | None = None) -> httpx.AsyncClient:
    """A client of `app` holding a new token with `role` (named after the role unless `name`)."""
    token = services.api_tokens.create(name or str(role), role)[1]
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t",
                             headers={"Authorization": f"Bearer {token}"})


def concrete(path: str) -> str:
    return re.sub(r"\{[^}]+\}", "x1", path)


def assert_refused(r: httpx.Response, status: int, code: str) -> None:
    assert r.status_code == status, (r.request.method, r.request.url, r.text)
    body = r.json()
    assert set(body) == {"error", "message", "details"} and body["error"] == code and body["message"]
    if status == 401:
        assert r.headers["www-authenticate"] == "Bearer"


# --- the table ------------------------------------------------------------------------------------


def test_every_route_needs_the_role_of_the_table(app: FastAPI) -> None:
    served = route_roles(app)
    assert {key: role for key, role in served.items() if role is not None} == ROLES
    assert {path for (_, path), role in served.items() if role is None} <= OPEN_PATHS


async def test_every_route_but_the_open_ones_refuses_an_anonymous_call(
    app: FastAPI, anonymous: httpx.AsyncClient
) -> None:
    checked = 0
    for (method, path), role in route_roles(app).items():
        if role is None:
            assert path in OPEN_PATHS, f"{method} {path} needs no token"
            continue
        r = await anonymous.request(method, concrete(path), json={} if method in MUTATING else None)
        assert_refused(r, 401, "unauthenticated")
        checked += 1
    assert checked == len(ROLES)


async def test_a_viewer_may_read_but_change_nothing(app: FastAPI, services: Services) -> None:
    async with as_role(app, services, V) as viewer:
        for (method, path), role in route_roles(app).items():
            if role is None:
                continue
            r = await viewer.request(method, concrete(path), json={} if method in MUTATING else None)
            if role is V:
                assert r.status_code not in (401, 403), (method, path, r.text)
            else:
                assert_refused(r, 403, "forbidden")
                assert f"needs the {role} role" in r.json()["message"]


@pytest.mark.parametrize(("method", "path", "operator", "admin"), [
    ("PUT", "/api/v1/nodes/x1/status", True, True),
    ("POST", "/api/v1/nodes/x1/pipelines", True, True),
    ("POST", "/api/v1/instances/register", True, True),
    ("POST", "/api/v1/instances/x1/actions", True, True),
    ("DELETE", "/api/v1/instances/x1", True, True),
    ("POST", "/api/v1/runs/x1/cancel", True, True),
    ("POST", "/api/v1/nodes/x1/ping", True, True),
    ("POST", "/api/v1/nodes", False, True),
    ("PATCH", "/api/v1/nodes/x1/labels", False, True),
    ("POST", "/api/v1/nodes/x1/token", False, True),
    ("POST", "/api/v1/platforms", False, True),
    ("POST", "/api/v1/gamecards", False, True),
    ("POST", "/api/v1/rollouts", False, True),
    ("POST", "/api/v1/nodes/x1/ssh/trust", False, True),
    ("POST", "/api/v1/tokens", False, True),
    ("GET", "/api/v1/tokens", False, True),
    ("GET", "/api/v1/audit", False, True),
])
async def test_operator_and_admin(
    app: FastAPI, services: Services, method: str, path: str, operator: bool, admin: bool
) -> None:
    for role, allowed in ((O, operator), (A, admin)):
        async with as_role(app, services, role) as client:
            r = await client.request(method, path, json={} if method in MUTATING else None)
        if allowed:
            assert r.status_code not in (401, 403), (role, r.text)
        else:
            assert_refused(r, 403, "forbidden")


async def test_a_bad_or_revoked_token_is_401(app: FastAPI, services: Services) -> None:
    record, token = services.api_tokens.create("soon-gone", A)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        assert (await client.get("/api/v1/nodes", headers={"Authorization": f"Bearer {token}"})).status_code == 200
        for header in (f"Bearer {token}x", f"Basic {token}", "Bearer", token, "Bearer a.b"):
            assert_refused(await client.get("/api/v1/nodes", headers={"Authorization": header}), 401,
                           "unauthenticated")
        services.api_tokens.revoke(record.id)
        r = await client.get("/api/v1/nodes", headers={"Authorization": f"Bearer {token}"})
        assert_refused(r, 401, "unauthenticated")


async def test_health_and_docs_are_open(anonymous: httpx.AsyncClient) -> None:
    assert (await anonymous.get("/healthz")).status_code == 200
    assert (await anonymous.get("/docs")).status_code == 200
    spec = (await anonymous.get("/openapi.json")).json()
    assert any(s.get("scheme") == "bearer" for s in spec["components"]["securitySchemes"].values())


async def test_an_app_without_an_authenticator_lets_everyone_in_as_admin(services: Services) -> None:
    app = create_app(services)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as client:
        r = await client.post("/api/v1/nodes", json={"id": "n1", "name": "n1", "type": "physical"},
                              headers={"X-Gamenode-Actor": "tester"})
        assert r.status_code == 201, r.text
        assert (await client.get("/api/v1/audit")).status_code == 200
    assert services.nodes.status_history("n1")[-1].by == "tester"
    assert services.audit.query()[0].actor == "api"


# --- the tokens API -------------------------------------------------------------------------------


async def test_tokens_are_created_listed_and_revoked_by_an_admin(app: FastAPI, services: Services) -> None:
    async with as_role(app, services, A, name="root") as admin:
        r = await admin.post("/api/v1/tokens", json={"name": "ci", "role": "operator", "ttl_days": 2})
        assert r.status_code == 201, r.text
        made = r.json()
        assert made["token"].startswith(made["id"] + ".") and made["role"] == "operator"
        assert made["created_by"] == "root" and made["expires_at"] and made["expired"] is False

        listed = (await admin.get("/api/v1/tokens")).json()
        assert {t["name"] for t in listed} == {"root", "ci"}
        assert all(set(t) == {"id", "name", "role", "created_at", "created_by", "expires_at", "expired"}
                   for t in listed)  # never the token, never its HMAC
        assert made["token"].split(".")[1] not in json.dumps(listed)

        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t",
                                     headers={"Authorization": f"Bearer {made['token']}"}) as ci:
            assert (await ci.put("/api/v1/nodes/none/status", json={"status": "ready"})).status_code == 404
            assert (await admin.delete(f"/api/v1/tokens/{made['id']}")).status_code == 204
            assert_refused(await ci.get("/api/v1/nodes"), 401, "unauthenticated")
        assert (await admin.delete(f"/api/v1/tokens/{made['id']}")).status_code == 404
        bad = await admin.post("/api/v1/tokens", json={"name": "x", "role": "root"})
        assert bad.status_code == 422 and "role" in bad.json()["message"]


async def test_the_actor_of_a_change_is_the_tokens_name(app: FastAPI, services: Services) -> None:
    async with as_role(app, services, A, name="alice") as alice:
        r = await alice.post("/api/v1/nodes", json={"id": "n1", "name": "n1", "type": "physical"},
                             headers={"X-Gamenode-Actor": "someone-else"})
        assert r.status_code == 201, r.text
    assert services.nodes.status_history("n1")[-1].by == "alice"


# --- the audit ------------------------------------------------------------------------------------


async def test_changes_are_audited_with_who_what_and_how_they_ended(
    app: FastAPI, services: Services, anonymous: httpx.AsyncClient, tmp_path: Path
) -> None:
    async with as_role(app, services, A, name="alice") as alice, as_role(app, services, V, name="val") as val:
        assert (await alice.post("/api/v1/nodes", json={"id": "n1", "name": "n1", "type": "physical"})).is_success
        assert (await alice.get("/api/v1/nodes/n1")).is_success  # a read: not audited
        assert (await val.delete("/api/v1/nodes/n1")).status_code == 403
        assert (await anonymous.put("/api/v1/nodes/n1/status", json={"status": "ready"})).status_code == 401
        assert (await alice.post("/api/v1/nodes/n9/token")).status_code == 404
        made = (await alice.post("/api/v1/tokens", json={"name": "ci", "role": "viewer"})).json()

        entries = (await alice.get("/api/v1/audit")).json()
        seen = [(e["actor"], e["role"], e["via"], e["action"], e["target"], e["status"]) for e in entries]
        assert seen == [
            ("alice", "admin", "rest", "POST /api/v1/tokens", {"kind": "api_token", "id": made["id"]}, "201"),
            ("alice", "admin", "rest", "POST /api/v1/nodes/{node_id}/token", {"kind": "node", "id": "n9"}, "404"),
            ("anonymous", "", "rest", "PUT /api/v1/nodes/{node_id}/status", {"kind": "node", "id": "n1"}, "401"),
            ("val", "viewer", "rest", "DELETE /api/v1/nodes/{node_id}", {"kind": "node", "id": "n1"}, "403"),
            ("alice", "admin", "rest", "POST /api/v1/nodes", {"kind": "node", "id": "n1"}, "201"),
        ]
        assert [e.get("detail") for e in entries[1:4]] == ["not_found", "unauthenticated", "forbidden"]

        only = (await alice.get("/api/v1/audit", params={"actor": "val"})).json()
        assert [e["action"] for e in only] == ["DELETE /api/v1/nodes/{node_id}"]
        assert len((await alice.get("/api/v1/audit", params={"kind": "node", "target": "n1"})).json()) == 3
        assert len((await alice.get("/api/v1/audit", params={"limit": 2})).json()) == 2
        assert_refused(await val.get("/api/v1/audit"), 403, "forbidden")
        assert_refused(await anonymous.get("/api/v1/audit"), 401, "unauthenticated")
    assert made["token"].split(".")[1] not in (tmp_path / "data" / "audit.log").read_text()
