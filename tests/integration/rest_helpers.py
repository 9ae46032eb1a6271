"""Helpers shared by the `test_rest_*` modules (a module of its own, not conftest,
so that no other directory's conftest can shadow it)."""

from __future__ import annotations

import uuid
from typing import Any

import httpx

SEED_FIELDS = {
    "id",
    "name",
    "model",
    "type",
    "status",
    "location",
    "hardware",
    "network",
    "resources",
    "metrics",
    "labels",
    "online",
    "last_online",
    "created_at",
    "updated_at",
}
ERROR_FIELDS = {"error", "message", "details"}


def uid(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def create_node(api: httpx.Client, id: str | None = None, **fields: Any) -> dict[str, Any]:
    body = {"id": id or uid("n"), "name": "node", "type": "physical", **fields}
    r = api.post("/api/v1/nodes", json=body)
    assert r.status_code == 201, r.text
    node: dict[str, Any] = r.json()
    return node


def assert_error(r: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert r.status_code == status, r.text
    body: dict[str, Any] = r.json()
    assert set(body) == ERROR_FIELDS
    assert body["error"] == code
    assert body["message"]
    return body


def paths(r: httpx.Response) -> list[str]:
    return [d["path"] for d in r.json()["details"]]


def create_instance(api: httpx.Client, node_id: str, **fields: Any) -> dict[str, Any]:
    r = api.post("/api/v1/instances/register", json={"node_id": node_id, **fields})
    assert r.status_code == 201, r.text
    inst: dict[str, Any] = r.json()
    return inst
