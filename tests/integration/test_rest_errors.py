"""How a real hub refuses: 404, 409 and 422 in one error shape, and never a 5xx on odd input.

The tests share the session's hub and keep to ids of their own.
"""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
from rest_helpers import ERROR_FIELDS, assert_error, create_node, paths, uid

# --- listing errors -----------------------------------------------------------


@pytest.mark.parametrize(
    ("params", "mentions"),
    [
        ({"status": "bogus"}, "query.status"),
        ({"type": "robot"}, "query.type"),
        ({"selector": "region==="}, "selector"),
        ({"selector": "tier in (gold"}, "selector"),
        ({"sort": "colour"}, "colour"),
        ({"sort": "-status,nope"}, "nope"),
        ({"limit": "-1"}, "query.limit"),
        ({"limit": "ten"}, "query.limit"),
        ({"offset": "-5"}, "query.offset"),
        ({"colour": "red"}, "query.colour"),
    ],
)
def test_list_bad_query_params(api: httpx.Client, params: dict[str, str], mentions: str) -> None:
    body = assert_error(api.get("/api/v1/nodes", params=params), 422, "invalid_input")
    assert mentions in body["message"]


# --- node errors --------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "suffix", "body"),
    [
        ("GET", "", None),
        ("PUT", "", {"name": "x"}),
        ("DELETE", "", None),
        ("PUT", "/status", {"status": "online", "reason": ""}),
        ("GET", "/history", None),
        ("GET", "/resources", None),
        ("GET", "/instances", None),
        ("PATCH", "/labels", {"set": {"a": "b"}}),
    ],
)
def test_unknown_node_is_404(api: httpx.Client, method: str, suffix: str, body: Any) -> None:
    id = uid("ghost")
    body_json = assert_error(api.request(method, f"/api/v1/nodes/{id}{suffix}", json=body), 404, "not_found")
    assert id in body_json["message"]


def test_duplicate_node_is_409(api: httpx.Client) -> None:
    node = create_node(api)
    r = api.post("/api/v1/nodes", json={"id": node["id"], "name": "again", "type": "virtual"})
    assert "already exists" in assert_error(r, 409, "conflict")["message"]
    assert api.get(f"/api/v1/nodes/{node['id']}").json()["name"] == "node"


def test_status_transitions(api: httpx.Client) -> None:
    id = create_node(api)["id"]
    status = f"/api/v1/nodes/{id}/status"
    message = assert_error(api.put(status, json={"status": "ready", "reason": ""}), 409, "conflict")[
        "message"
    ]
    assert "offline" in message and "ready" in message
    assert_error(api.put(status, json={"status": "maintenance"}), 422, "invalid_input")  # needs a reason
    assert_error(api.put(status, json={"status": "sleeping"}), 422, "invalid_input")
    r = api.put(status, json={"status": "offline"})  # the status it has: nothing changes
    assert r.status_code == 200
    for step in ("online", "ready", "maintenance", "ready", "offline"):
        r = api.put(status, json={"status": step, "reason": "test"})
        assert r.status_code == 200, r.text
        assert r.json()["status"] == step
    # a status change through PUT /nodes/{id} follows the same rules
    assert_error(api.put(f"/api/v1/nodes/{id}", json={"status": "ready"}), 409, "conflict")
    assert api.get(f"/api/v1/nodes/{id}").json()["status"] == "offline"


def test_status_body_is_checked(api: httpx.Client) -> None:
    id = create_node(api)["id"]
    r = api.put(f"/api/v1/nodes/{id}/status", json={"reason": "no status"})
    assert_error(r, 422, "invalid_input")
    assert paths(r) == ["body.status"]
    r = api.put(f"/api/v1/nodes/{id}/status", json={"status": "online", "why": "x"})
    assert_error(r, 422, "invalid_input")
    assert paths(r) == ["body.why"]


@pytest.mark.parametrize(
    ("changes", "path"),
    [
        ({"type": "mainframe"}, "body.type"),
        ({"labels": {"bad key!": "x"}}, "labels.bad key! (key)"),
        ({"labels": {"region": "not ok"}}, "labels.region"),
        ({"labels": {"region": 5}}, "body.labels.region"),
        ({"name": None}, "body.name"),
        ({"name": 5}, "body.name"),
        ({"name": ""}, "name"),
        ({"online": "maybe"}, "body.online"),
        ({"hardware": ["cpu"]}, "body.hardware"),
        ({"created_at": "yesterday"}, "body.created_at"),
        ({"id": ["a"]}, "body.id"),
        ({"id": "has space"}, "id"),
        ({"colour": "red"}, "body.colour"),
    ],
)
def test_invalid_node_body_names_the_field(api: httpx.Client, changes: dict[str, Any], path: str) -> None:
    body = {"id": uid("bad"), "name": "bad", "type": "physical", **changes}
    if changes.get("name", "") is None:
        del body["name"]
    r = api.post("/api/v1/nodes", json=body)
    assert_error(r, 422, "invalid_input")
    assert path in paths(r)


def test_missing_fields_are_named(api: httpx.Client) -> None:
    r = api.post("/api/v1/nodes", json={"model": "x"})
    assert_error(r, 422, "invalid_input")
    assert sorted(paths(r)) == ["body.id", "body.name", "body.type"]


def test_update_with_invalid_body_changes_nothing(api: httpx.Client) -> None:
    node = create_node(api)
    r = api.put(f"/api/v1/nodes/{node['id']}", json={"name": "x", "labels": {"-bad": "x"}})
    assert_error(r, 422, "invalid_input")
    assert api.get(f"/api/v1/nodes/{node['id']}").json() == node
    r = api.put(f"/api/v1/nodes/{node['id']}", json={"id": "another"})
    assert_error(r, 422, "invalid_input")


@pytest.mark.parametrize(
    "content",
    [b"{", b'{"id": "x",}', b"{'id': 'x'}", b"\xff\xfe", b'{"id": "a"} trailing'],
)
def test_malformed_json_is_422(api: httpx.Client, content: bytes) -> None:
    r = api.post("/api/v1/nodes", content=content, headers={"content-type": "application/json"})
    assert_error(r, 422, "invalid_input")
    assert all(p.startswith("body") for p in paths(r))


def test_node_with_live_instance_cannot_be_deleted(api: httpx.Client) -> None:
    node = create_node(api)
    inst = api.post("/api/v1/instances/register", json={"node_id": node["id"]}).json()
    message = assert_error(api.delete(f"/api/v1/nodes/{node['id']}"), 409, "conflict")["message"]
    assert inst["id"] in message
    for state in ("stopping", "stopped"):
        api.put(f"/api/v1/instances/{inst['id']}/state", json={"state": state}).raise_for_status()
    assert api.delete(f"/api/v1/nodes/{node['id']}").status_code == 204


def _deep(depth: int, leaf: str = "1") -> str:
    return '{"a":' * depth + leaf + "}" * depth


ODD_REQUESTS: list[tuple[str, str, dict[str, Any]]] = [
    ("POST", "/api/v1/nodes", {"json": {"id": "big", "name": "x" * 1_000_000, "type": "physical"}}),
    ("POST", "/api/v1/nodes", {"json": {"id": "x" * 100_000, "name": "x", "type": "physical"}}),
    (
        "POST",
        "/api/v1/nodes",
        {"json": {"id": uid("big"), "name": "x", "type": "physical", "hardware": {"blob": "y" * 2_000_000}}},
    ),
    (
        "POST",
        "/api/v1/nodes",
        {"content": '{"id":"deep","name":"d","type":"physical","hardware":' + _deep(400) + "}"},
    ),
    ("POST", "/api/v1/nodes", {"content": "[" * 50_000 + "]" * 50_000}),
    ("POST", "/api/v1/nodes", {"content": _deep(5_000)}),
    ("POST", "/api/v1/nodes", {"json": {"id": 12, "name": 34, "type": 56}}),
    ("POST", "/api/v1/nodes", {"json": {"id": 1e308, "name": True, "type": None}}),
    ("POST", "/api/v1/nodes", {"json": {"id": "ünï-cødé", "name": "名前 🎮", "type": "physical"}}),
    ("POST", "/api/v1/nodes", {"content": '{"id":"sur","name":"\\ud800","type":"physical"}'}),
    ("POST", "/api/v1/nodes", {"content": ""}),
    ("POST", "/api/v1/nodes", {"content": "null"}),
    ("POST", "/api/v1/nodes", {"content": "[]"}),
    ("POST", "/api/v1/nodes", {"content": '"just a string"'}),
    ("POST", "/api/v1/nodes", {"content": "\x00\x01\x02"}),
    ("GET", "/api/v1/nodes/12", {}),
    ("GET", "/api/v1/nodes/%C3%BC%F0%9F%8E%AE", {}),
    ("GET", "/api/v1/nodes/" + "z" * 8000, {}),
    ("GET", "/api/v1/nodes/%00", {}),
    ("GET", "/api/v1/nodes/..%2F..%2Fetc%2Fpasswd", {}),
    ("PUT", "/api/v1/nodes/12/status", {"json": {"status": 12, "reason": ["x"]}}),
    ("PUT", "/api/v1/nodes/12/status", {"content": ""}),
    ("GET", "/api/v1/nodes?limit=99999999999999999999999", {}),
    ("GET", "/api/v1/nodes?selector=" + "a," * 5000, {}),
    ("GET", "/api/v1/nodes?selector=%00%FF", {}),
    ("GET", "/api/v1/nodes?sort=" + "-" * 1000, {}),
    ("GET", "/api/v1/nodes?q=" + "ü" * 2000, {}),
    ("PATCH", "/api/v1/nodes/12", {"json": {}}),
    ("POST", "/api/v1/instances", {"json": {"node_id": 12, "resources": {"cpu": -1}}}),
    ("POST", "/api/v1/instances/register", {"json": {"node_id": 12, "resources": {"cpu": -1}}}),
    ("POST", "/api/v1/instances", {"json": {"game": "g" * 5000, "params": {"a": _deep(300)}}}),
    ("POST", "/api/v1/instances/x/actions", {"json": {"action": 7}}),
    (
        "POST",
        "/api/v1/gamecards",
        {"json": {"id": uid("g"), "name": "g", "versions": [{"version": "¹.2.3", "image": "i"}]}},
    ),
    ("POST", "/api/v1/platforms", {"json": {"id": uid("p"), "name": "p", "config": {"": 1}}}),
    ("PUT", "/api/v1/platforms/12/config/k", {"content": '{"value":' + _deep(300) + "}"}),
]


@pytest.mark.parametrize(("method", "url", "kwargs"), ODD_REQUESTS, ids=range(len(ODD_REQUESTS)))
def test_odd_input_is_never_a_500(api: httpx.Client, method: str, url: str, kwargs: dict[str, Any]) -> None:
    if "content" in kwargs:
        kwargs = {**kwargs, "headers": {"content-type": "application/json"}}
    r = api.request(method, url, **kwargs)
    assert r.status_code < 500, r.text[:500]
    if r.status_code >= 400:
        assert set(r.json()) == ERROR_FIELDS
        assert isinstance(r.json()["details"], list)


def test_deeply_nested_map_is_refused_not_stored(api: httpx.Client) -> None:
    id = uid("deep")
    body = f'{{"id":"{id}","name":"d","type":"physical","hardware":{_deep(400)}}}'
    r = api.post("/api/v1/nodes", content=body, headers={"content-type": "application/json"})
    assert_error(r, 422, "invalid_input")
    assert_error(api.get(f"/api/v1/nodes/{id}"), 404, "not_found")
    platform = uid("plat")
    api.post("/api/v1/platforms", json={"id": platform, "name": "p"}).raise_for_status()
    r = api.put(
        f"/api/v1/platforms/{platform}/config/k",
        content='{"value":' + _deep(300) + "}",
        headers={"content-type": "application/json"},
    )
    assert_error(r, 422, "invalid_input")
    assert api.get(f"/api/v1/platforms/{platform}/config").json() == {}
    # a reasonably nested one is fine and reads back unchanged
    hardware = json.loads(_deep(50))
    node = create_node(api, hardware=hardware)
    assert api.get(f"/api/v1/nodes/{node['id']}").json()["hardware"] == hardware
