"""The REST API of a real `gamenode hub` process, over HTTP.

Most tests share the session's hub and keep to ids of their own; the
persistence and start-up tests run hubs of their own (`start_hub`).
"""

from __future__ import annotations

import json
import subprocess
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import pytest

if TYPE_CHECKING:
    from conftest import HubProcess

    RunHub = Callable[[Path], subprocess.CompletedProcess[str]]

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
GO_ZERO_TIME = "0001-01-01T00:00:00Z"


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


# --- the seed's six node endpoints ------------------------------------------


def test_seed_node_endpoints(api: httpx.Client) -> None:
    id = uid("seed")
    r = api.post(
        "/api/v1/nodes",
        json={
            "id": id,
            "name": "Seed node",
            "model": "Dell R750",
            "type": "virtual",
            "location": "Frankfurt",
            "hardware": {"cpu": {"cores": 8}},
            "network": {"ip": "10.0.0.1"},
            "labels": {"region": "eu"},
        },
    )
    assert r.status_code == 201, r.text
    created = r.json()
    assert set(created) == SEED_FIELDS
    assert created["status"] == "offline"
    assert created["online"] is False
    assert created["last_online"] is None
    assert created["labels"] == {"region": "eu"}

    r = api.get(f"/api/v1/nodes/{id}")
    assert r.status_code == 200
    assert r.json() == created

    listed = api.get("/api/v1/nodes", params={"q": id})
    assert listed.status_code == 200
    assert [n["id"] for n in listed.json()] == [id]
    assert set(listed.json()[0]) == SEED_FIELDS

    r = api.put(f"/api/v1/nodes/{id}", json={"name": "Renamed", "location": "Amsterdam"})
    assert r.status_code == 200, r.text
    updated = r.json()
    assert set(updated) == SEED_FIELDS
    assert (updated["name"], updated["location"], updated["model"]) == ("Renamed", "Amsterdam", "Dell R750")
    assert updated["created_at"] == created["created_at"]

    r = api.put(f"/api/v1/nodes/{id}/status", json={"status": "online", "reason": "agent connected"})
    assert r.status_code == 200, r.text
    assert set(r.json()) == SEED_FIELDS
    assert r.json()["status"] == "online"
    assert api.get(f"/api/v1/nodes/{id}").json()["status"] == "online"

    r = api.delete(f"/api/v1/nodes/{id}")
    assert r.status_code == 204
    assert r.content == b""
    assert_error(api.get(f"/api/v1/nodes/{id}"), 404, "not_found")


def test_go_client_body_is_accepted(api: httpx.Client) -> None:
    id = uid("go")
    body = {
        "id": id,
        "name": "go",
        "model": "",
        "type": "container",
        "status": "",
        "location": "",
        "hardware": None,
        "network": None,
        "resources": None,
        "metrics": None,
        "labels": None,
        "online": True,
        "last_online": GO_ZERO_TIME,
        "created_at": GO_ZERO_TIME,
        "updated_at": GO_ZERO_TIME,
    }
    r = api.post("/api/v1/nodes", json=body)
    assert r.status_code == 201, r.text
    node = r.json()
    assert node["status"] == "offline"
    maps = ("hardware", "network", "resources", "metrics", "labels")
    assert {k: node[k] for k in maps} == {k: {} for k in maps}
    # online and the times belong to the hub
    assert node["online"] is False
    assert node["last_online"] is None
    assert not node["created_at"].startswith("0001")

    r = api.put(f"/api/v1/nodes/{id}", json={**body, "name": "go again"})
    assert r.status_code == 200, r.text
    assert r.json()["name"] == "go again"
    assert r.json()["status"] == "offline"  # "" leaves the status alone


def test_get_put_round_trip_of_the_full_object(api: httpx.Client) -> None:
    node = create_node(api, hardware={"gpus": [{"model": "L4"}]}, labels={"rack": "r1"})
    api.put(f"/api/v1/nodes/{node['id']}/status", json={"status": "online"}).raise_for_status()
    got = api.get(f"/api/v1/nodes/{node['id']}").json()

    r = api.put(f"/api/v1/nodes/{node['id']}", json={**got, "model": "R760"})
    assert r.status_code == 200, r.text
    again = r.json()
    assert again["model"] == "R760"
    unchanged = SEED_FIELDS - {"model", "updated_at"}
    assert {k: again[k] for k in unchanged} == {k: got[k] for k in unchanged}
    # and the answer can be sent straight back again
    assert api.put(f"/api/v1/nodes/{node['id']}", json=again).status_code == 200


def test_unicode_text_round_trips(api: httpx.Client) -> None:
    node = create_node(api, name="名前 🎮 ñ", location="Zürich", hardware={"gpu": "Ωmega ✓"})
    got = api.get(f"/api/v1/nodes/{node['id']}").json()
    assert (got["name"], got["location"], got["hardware"]) == ("名前 🎮 ñ", "Zürich", {"gpu": "Ωmega ✓"})
    assert [n["id"] for n in api.get("/api/v1/nodes", params={"q": "名前 🎮"}).json()] == [node["id"]]


# --- listing ------------------------------------------------------------------


@pytest.fixture(scope="module")
def fleet(api: httpx.Client) -> dict[str, Any]:
    """Five nodes in a location of their own."""
    location = uid("loc")
    specs = [
        ("alpha", "physical", {"region": "eu", "rack": "r1"}, "online"),
        ("bravo", "physical", {"region": "eu", "rack": "r3"}, "offline"),
        ("charlie", "virtual", {"region": "us", "rack": "r1"}, "online"),
        ("delta", "container", {"region": "us"}, "maintenance"),
        ("echo", "virtual", {"region": "ap", "spot": "yes"}, "offline"),
    ]
    ids = {}
    for name, kind, labels, status in specs:
        node = create_node(
            api, id=f"{location}-{name}", name=name.upper(), type=kind, location=location, labels=labels
        )
        if status != "offline":
            api.put(
                f"/api/v1/nodes/{node['id']}/status", json={"status": status, "reason": "set up"}
            ).raise_for_status()
        ids[name] = node["id"]
    return {"location": location, "ids": ids}


def listed(api: httpx.Client, fleet: dict[str, Any], **params: Any) -> tuple[list[str], int]:
    r = api.get("/api/v1/nodes", params={"location": fleet["location"], **params})
    assert r.status_code == 200, r.text
    names = [n["name"].lower() for n in r.json()]
    return names, int(r.headers["X-Total-Count"])


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({}, ["alpha", "bravo", "charlie", "delta", "echo"]),
        ({"status": "online"}, ["alpha", "charlie"]),
        ({"type": "virtual"}, ["charlie", "echo"]),
        ({"selector": "region=eu"}, ["alpha", "bravo"]),
        ({"selector": "region in (us,ap),!spot"}, ["charlie", "delta"]),
        ({"selector": "rack!=r1"}, ["bravo", "delta", "echo"]),
        ({"q": "CHAR"}, ["charlie"]),
        ({"sort": "-name"}, ["echo", "delta", "charlie", "bravo", "alpha"]),
        ({"sort": "-status,name"}, ["alpha", "charlie", "bravo", "echo", "delta"]),
        ({"status": "offline", "type": "physical"}, ["bravo"]),
    ],
)
def test_list_filters(
    api: httpx.Client, fleet: dict[str, Any], params: dict[str, str], expected: list[str]
) -> None:
    names, total = listed(api, fleet, **params)
    assert names == expected
    assert total == len(expected)


def test_list_paging_counts_before_paging(api: httpx.Client, fleet: dict[str, Any]) -> None:
    assert listed(api, fleet, limit=2) == (["alpha", "bravo"], 5)
    assert listed(api, fleet, limit=2, offset=2) == (["charlie", "delta"], 5)
    assert listed(api, fleet, limit=2, offset=4) == (["echo"], 5)
    assert listed(api, fleet, offset=10) == ([], 5)
    assert listed(api, fleet, limit=0) == ([], 5)


def test_list_location_matches_exactly(api: httpx.Client, fleet: dict[str, Any]) -> None:
    r = api.get("/api/v1/nodes", params={"location": fleet["location"][:-1]})
    assert r.status_code == 200
    assert not any(n["id"] in fleet["ids"].values() for n in r.json())


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
    inst = api.post("/api/v1/instances", json={"node_id": node["id"]}).json()
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


# --- instances ----------------------------------------------------------------


@pytest.fixture
def small_node(api: httpx.Client) -> dict[str, Any]:
    """4 cores, 8 GiB, no GPU."""
    return create_node(api, hardware={"cpu": {"cores": 4}, "memory_mb": 8192})


def create_instance(api: httpx.Client, node_id: str, **fields: Any) -> dict[str, Any]:
    r = api.post("/api/v1/instances", json={"node_id": node_id, **fields})
    assert r.status_code == 201, r.text
    inst: dict[str, Any] = r.json()
    return inst


def set_state(api: httpx.Client, id: str, state: str, **extra: Any) -> httpx.Response:
    return api.put(f"/api/v1/instances/{id}/state", json={"state": state, **extra})


def test_instance_crud_and_states(api: httpx.Client, small_node: dict[str, Any]) -> None:
    id = uid("inst")
    inst = create_instance(
        api,
        small_node["id"],
        id=id,
        resources={"cpu": 2, "memory_mb": 2048},
        ports=[{"name": "game", "container_port": 7777, "protocol": "udp"}],
    )
    assert inst["state"] == "pending"
    assert inst["resources"] == {"cpu": 2.0, "memory_mb": 2048, "gpu": 0}
    assert api.get(f"/api/v1/instances/{id}").json() == inst

    r = api.get("/api/v1/instances", params={"node_id": small_node["id"]})
    assert [i["id"] for i in r.json()] == [id]
    assert r.headers["X-Total-Count"] == "1"

    r = api.put(f"/api/v1/instances/{id}", json={"container_id": "abc123", "params": {"map": "dust"}})
    assert r.status_code == 200, r.text
    assert (r.json()["container_id"], r.json()["params"]) == ("abc123", {"map": "dust"})

    for state in ("preparing", "starting", "running"):
        r = set_state(api, id, state)
        assert r.status_code == 200, r.text
        assert r.json()["state"] == state
    assert r.json()["started_at"] is not None
    assert (
        api.get("/api/v1/instances", params={"state": "running", "node_id": small_node["id"]}).json()[0]["id"]
        == id
    )

    assert "running" in assert_error(set_state(api, id, "pending"), 409, "conflict")["message"]
    assert_error(set_state(api, id, "exploded"), 422, "invalid_input")
    assert "stop it" in assert_error(api.delete(f"/api/v1/instances/{id}"), 409, "conflict")["message"]

    assert set_state(api, id, "stopping").status_code == 200
    r = set_state(api, id, "stopped")
    assert r.json()["stopped_at"] is not None
    assert_error(set_state(api, id, "running"), 409, "conflict")  # stopped is final
    assert_error(api.put(f"/api/v1/instances/{id}", json={"run_id": "r2"}), 409, "conflict")

    assert api.delete(f"/api/v1/instances/{id}").status_code == 204
    assert_error(api.get(f"/api/v1/instances/{id}"), 404, "not_found")
    assert_error(api.delete(f"/api/v1/instances/{id}"), 404, "not_found")


def test_failed_instance_keeps_its_error(api: httpx.Client, small_node: dict[str, Any]) -> None:
    inst = create_instance(api, small_node["id"])
    r = set_state(api, inst["id"], "failed", error="image pull failed")
    assert (r.json()["state"], r.json()["error"]) == ("failed", "image pull failed")
    assert api.delete(f"/api/v1/instances/{inst['id']}").status_code == 204


def test_instance_resources_cannot_be_over_allocated(api: httpx.Client, small_node: dict[str, Any]) -> None:
    first = create_instance(api, small_node["id"], resources={"cpu": 3, "memory_mb": 4096})
    message = assert_error(
        api.post("/api/v1/instances", json={"node_id": small_node["id"], "resources": {"cpu": 2}}),
        409,
        "conflict",
    )["message"]
    assert "CPU" in message
    assert_error(
        api.post("/api/v1/instances", json={"node_id": small_node["id"], "resources": {"memory_mb": 8192}}),
        409,
        "conflict",
    )
    assert_error(
        api.post("/api/v1/instances", json={"node_id": small_node["id"], "resources": {"gpu": 1}}),
        409,
        "conflict",
    )
    create_instance(api, small_node["id"], resources={"cpu": 1, "memory_mb": 4096})  # exactly full

    # a stopped instance gives its resources back
    set_state(api, first["id"], "failed").raise_for_status()
    create_instance(api, small_node["id"], resources={"cpu": 3})


def test_instance_errors(api: httpx.Client, small_node: dict[str, Any]) -> None:
    assert_error(api.post("/api/v1/instances", json={"node_id": uid("ghost")}), 404, "not_found")
    r = api.post("/api/v1/instances", json={"node_id": small_node["id"], "resources": {"cpu": -1}})
    assert_error(r, 422, "invalid_input")
    assert paths(r) == ["body.resources.cpu"]
    r = api.post("/api/v1/instances", json={"node_id": small_node["id"], "ports": [{"container_port": 0}]})
    assert paths(r) == ["body.ports[0].container_port"]
    inst = create_instance(api, small_node["id"])
    dup = api.post("/api/v1/instances", json={"node_id": small_node["id"], "id": inst["id"]})
    assert_error(dup, 409, "conflict")
    assert_error(api.put(f"/api/v1/instances/{inst['id']}", json={"node_id": "x"}), 422, "invalid_input")
    api.put(f"/api/v1/nodes/{small_node['id']}/status", json={"status": "maintenance", "reason": "t"})
    assert (
        "maintenance"
        in assert_error(api.post("/api/v1/instances", json={"node_id": small_node["id"]}), 409, "conflict")[
            "message"
        ]
    )


# --- game cards -----------------------------------------------------------------


def versions(api: httpx.Client, card: str) -> list[tuple[str, str]]:
    r = api.get(f"/api/v1/gamecards/{card}/versions")
    assert r.status_code == 200, r.text
    return [(v["version"], v["status"]) for v in r.json()]


def default_of(api: httpx.Client, card: str) -> str:
    r = api.get(f"/api/v1/gamecards/{card}/default-version")
    assert r.status_code == 200, r.text
    version: str = r.json()["version"]
    return version


def test_game_card_crud(api: httpx.Client) -> None:
    id = uid("game")
    r = api.post("/api/v1/gamecards", json={"id": id, "name": "Quake", "labels": {"genre": "fps"}})
    assert r.status_code == 201, r.text
    card = r.json()
    assert card["versions"] == [] and card["default_version"] is None
    assert api.get(f"/api/v1/gamecards/{id}").json() == card
    assert_error(api.post("/api/v1/gamecards", json={"id": id, "name": "again"}), 409, "conflict")

    r = api.get("/api/v1/gamecards", params={"q": id})
    assert [c["id"] for c in r.json()] == [id] and r.headers["X-Total-Count"] == "1"
    assert api.get("/api/v1/gamecards", params={"q": id, "selector": "genre=rpg"}).json() == []

    got = api.get(f"/api/v1/gamecards/{id}").json()
    r = api.put(f"/api/v1/gamecards/{id}", json={**got, "description": "arena"})  # GET → PUT round trip
    assert r.status_code == 200, r.text
    assert r.json()["description"] == "arena" and r.json()["created_at"] == card["created_at"]
    assert_error(api.put(f"/api/v1/gamecards/{id}", json={"platform": uid("ghost")}), 422, "invalid_input")
    assert_error(api.get(f"/api/v1/gamecards/{id}/default-version"), 404, "not_found")

    assert api.delete(f"/api/v1/gamecards/{id}").status_code == 204
    assert_error(api.get(f"/api/v1/gamecards/{id}"), 404, "not_found")
    assert_error(api.get(f"/api/v1/gamecards/{id}/versions"), 404, "not_found")


def test_game_card_versions(api: httpx.Client) -> None:
    id = uid("game")
    body = {
        "id": id,
        "name": "Racer",
        "versions": [{"version": v, "image": f"img:{v}"} for v in ("1.2.0", "1.10.0", "1.0.0")],
    }
    api.post("/api/v1/gamecards", json=body).raise_for_status()
    assert versions(api, id) == [("1.10.0", "active"), ("1.2.0", "active"), ("1.0.0", "active")]
    assert default_of(api, id) == "1.10.0"

    r = api.post(
        f"/api/v1/gamecards/{id}/versions",
        json={"version": "2.0.0", "image": "img:2", "resources": {"cpu": 2}},
    )
    assert r.status_code == 201, r.text
    assert [v["version"] for v in r.json()["versions"]][-1] == "2.0.0"
    assert versions(api, id)[0] == ("2.0.0", "active")
    assert default_of(api, id) == "2.0.0"
    assert_error(
        api.post(f"/api/v1/gamecards/{id}/versions", json={"version": "2.0.0", "image": "x"}), 409, "conflict"
    )
    r = api.post(f"/api/v1/gamecards/{id}/versions", json={"version": "two", "image": "x"})
    assert_error(r, 422, "invalid_input")
    assert paths(r) == ["version"]

    r = api.put(f"/api/v1/gamecards/{id}/versions/2.0.0/status", json={"status": "deprecated"})
    assert r.status_code == 200, r.text
    assert versions(api, id)[0] == ("2.0.0", "deprecated")
    assert default_of(api, id) == "1.10.0"  # the newest active one
    assert_error(
        api.put(f"/api/v1/gamecards/{id}/versions/2.0.0/status", json={"status": "retired"}),
        422,
        "invalid_input",
    )
    assert_error(
        api.put(f"/api/v1/gamecards/{id}/versions/9.9.9/status", json={"status": "deprecated"}),
        404,
        "not_found",
    )

    r = api.put(f"/api/v1/gamecards/{id}/default-version", json={"version": "1.2.0"})
    assert r.status_code == 200 and r.json()["default_version"] == "1.2.0"
    assert default_of(api, id) == "1.2.0"
    assert_error(
        api.put(f"/api/v1/gamecards/{id}/default-version", json={"version": "2.0.0"}), 409, "conflict"
    )
    assert_error(
        api.put(f"/api/v1/gamecards/{id}/versions/1.2.0/status", json={"status": "deprecated"}),
        409,
        "conflict",
    )
    assert_error(api.delete(f"/api/v1/gamecards/{id}/versions/1.2.0"), 409, "conflict")
    assert_error(api.put(f"/api/v1/gamecards/{id}/default-version", json={}), 422, "invalid_input")
    r = api.put(f"/api/v1/gamecards/{id}/default-version", json={"version": None})
    assert r.status_code == 200 and r.json()["default_version"] is None
    assert default_of(api, id) == "1.10.0"

    r = api.put(f"/api/v1/gamecards/{id}/versions/2.0.0/status", json={"status": "active"})
    assert r.status_code == 200
    assert default_of(api, id) == "2.0.0"

    r = api.delete(f"/api/v1/gamecards/{id}/versions/1.0.0")
    assert r.status_code == 200, r.text
    assert "1.0.0" not in [v["version"] for v in r.json()["versions"]]
    assert [v for v, _ in versions(api, id)] == ["2.0.0", "1.10.0", "1.2.0"]
    assert_error(api.delete(f"/api/v1/gamecards/{id}/versions/1.0.0"), 404, "not_found")


def test_instance_takes_the_game_cards_default_version(api: httpx.Client) -> None:
    node = create_node(api, hardware={"cpu": {"cores": 8}, "memory_mb": 8192})
    card = uid("game")
    api.post(
        "/api/v1/gamecards",
        json={
            "id": card,
            "name": "g",
            "versions": [
                {"version": "1.0.0", "image": "img:1", "resources": {"cpu": 2, "memory_mb": 1024}},
                {"version": "1.1.0", "image": "img:1.1", "status": "deprecated"},
            ],
        },
    ).raise_for_status()
    inst = create_instance(api, node["id"], game=card)
    assert (inst["game_version"], inst["resources"]["cpu"]) == ("1.0.0", 2.0)
    assert_error(
        api.post("/api/v1/instances", json={"node_id": node["id"], "game": card, "game_version": "1.1.0"}),
        409,
        "conflict",
    )
    assert_error(api.delete(f"/api/v1/gamecards/{card}"), 409, "conflict")  # a live instance uses it
    assert_error(api.delete(f"/api/v1/gamecards/{card}/versions/1.0.0"), 409, "conflict")


# --- platforms ------------------------------------------------------------------


def test_platform_crud_and_state(api: httpx.Client) -> None:
    id = uid("plat")
    r = api.post("/api/v1/platforms", json={"id": id, "name": "Docker", "required_labels": {"gpu": "l4"}})
    assert r.status_code == 201, r.text
    platform = r.json()
    assert (platform["state"], platform["pipeline"], platform["config"]) == ("enabled", "platform-start", {})
    assert api.get(f"/api/v1/platforms/{id}").json() == platform
    assert_error(api.post("/api/v1/platforms", json={"id": id, "name": "again"}), 409, "conflict")
    r = api.post("/api/v1/platforms", json={"id": uid("plat"), "name": "p", "pipeline": "../etc"})
    assert "pipeline" in paths(r)

    r = api.put(f"/api/v1/platforms/{id}", json={**platform, "description": "containers"})
    assert r.status_code == 200 and r.json()["description"] == "containers"

    r = api.put(f"/api/v1/platforms/{id}/state", json={"state": "disabled"})
    assert r.status_code == 200 and r.json()["state"] == "disabled"
    assert [p["id"] for p in api.get("/api/v1/platforms", params={"state": "disabled", "q": id}).json()] == [
        id
    ]
    assert_error(api.put(f"/api/v1/platforms/{id}/state", json={"state": "paused"}), 422, "invalid_input")

    card = uid("game")
    api.post("/api/v1/gamecards", json={"id": card, "name": "g", "platform": id}).raise_for_status()
    assert card in assert_error(api.delete(f"/api/v1/platforms/{id}"), 409, "conflict")["message"]
    api.delete(f"/api/v1/gamecards/{card}").raise_for_status()

    assert api.delete(f"/api/v1/platforms/{id}").status_code == 204
    assert_error(api.get(f"/api/v1/platforms/{id}"), 404, "not_found")
    assert_error(api.put(f"/api/v1/platforms/{id}/state", json={"state": "enabled"}), 404, "not_found")


def test_platform_disabled_or_missing_labels_refuse_instances(api: httpx.Client) -> None:
    plain = create_node(api)
    gpu = create_node(api, labels={"gpu": "l4"})
    id = uid("plat")
    api.post(
        "/api/v1/platforms", json={"id": id, "name": "GPU", "required_labels": {"gpu": "l4"}}
    ).raise_for_status()
    assert (
        "gpu=l4"
        in assert_error(
            api.post("/api/v1/instances", json={"node_id": plain["id"], "platform": id}), 409, "conflict"
        )["message"]
    )
    create_instance(api, gpu["id"], platform=id)
    api.put(f"/api/v1/platforms/{id}/state", json={"state": "disabled"}).raise_for_status()
    assert (
        "disabled"
        in assert_error(
            api.post("/api/v1/instances", json={"node_id": gpu["id"], "platform": id}), 409, "conflict"
        )["message"]
    )


def test_platform_config(api: httpx.Client) -> None:
    id = uid("plat")
    api.post("/api/v1/platforms", json={"id": id, "name": "p", "config": {"a": 1}}).raise_for_status()
    config = f"/api/v1/platforms/{id}/config"
    assert api.get(config).json() == {"a": 1}

    r = api.patch(config, json={"b": {"nested": [1, 2]}, "c": "x"})
    assert r.status_code == 200 and r.json() == {"a": 1, "b": {"nested": [1, 2]}, "c": "x"}
    r = api.put(config, json={"only": True})
    assert r.status_code == 200 and r.json() == {"only": True}
    assert api.get(config).json() == {"only": True}

    assert api.get(f"{config}/only").json() == {"value": True}
    r = api.put(f"{config}/fps", json={"value": 60})
    assert r.status_code == 200 and r.json() == {"value": 60}
    assert api.put(f"{config}/list", json={"value": [1, "two", None]}).status_code == 200
    assert api.get(config).json() == {"only": True, "fps": 60, "list": [1, "two", None]}
    assert api.get(f"{config}/list").json() == {"value": [1, "two", None]}
    assert_error(api.put(f"{config}/fps", json={"val": 1}), 422, "invalid_input")
    assert_error(api.put(f"{config}/fps", json=60), 422, "invalid_input")

    assert api.delete(f"{config}/only").status_code == 204
    assert_error(api.get(f"{config}/only"), 404, "not_found")
    assert_error(api.delete(f"{config}/only"), 404, "not_found")
    assert api.get(config).json() == {"fps": 60, "list": [1, "two", None]}

    ghost = f"/api/v1/platforms/{uid('ghost')}/config"
    for method in ("GET", "PUT", "PATCH"):
        assert_error(api.request(method, ghost, json={} if method != "GET" else None), 404, "not_found")
    assert_error(api.get(f"{ghost}/k"), 404, "not_found")


# --- OpenAPI ------------------------------------------------------------------


EXPECTED_ROUTES = {
    "/api/v1/nodes": {"get", "post"},
    "/api/v1/nodes/{node_id}": {"get", "put", "delete"},
    "/api/v1/nodes/{node_id}/status": {"put"},
    "/api/v1/nodes/{node_id}/history": {"get"},
    "/api/v1/nodes/{node_id}/labels": {"patch"},
    "/api/v1/nodes/{node_id}/resources": {"get"},
    "/api/v1/nodes/{node_id}/instances": {"get"},
    "/api/v1/instances": {"get", "post"},
    "/api/v1/instances/{instance_id}": {"get", "put", "delete"},
    "/api/v1/instances/{instance_id}/state": {"put"},
    "/api/v1/gamecards": {"get", "post"},
    "/api/v1/gamecards/{card_id}": {"get", "put", "delete"},
    "/api/v1/gamecards/{card_id}/versions": {"get", "post"},
    "/api/v1/gamecards/{card_id}/versions/{version}": {"delete"},
    "/api/v1/gamecards/{card_id}/versions/{version}/status": {"put"},
    "/api/v1/gamecards/{card_id}/default-version": {"get", "put"},
    "/api/v1/platforms": {"get", "post"},
    "/api/v1/platforms/{platform_id}": {"get", "put", "delete"},
    "/api/v1/platforms/{platform_id}/state": {"put"},
    "/api/v1/platforms/{platform_id}/config": {"get", "put", "patch"},
    "/api/v1/platforms/{platform_id}/config/{key}": {"get", "put", "delete"},
    "/healthz": {"get"},
}


def test_openapi_lists_every_route(api: httpx.Client) -> None:
    r = api.get("/openapi.json")
    assert r.status_code == 200
    spec = r.json()
    assert {path: set(ops) for path, ops in spec["paths"].items()} == EXPECTED_ROUTES
    node_schema = spec["components"]["schemas"]["GameNode"]
    assert set(node_schema["properties"]) == SEED_FIELDS


def test_docs_page(api: httpx.Client) -> None:
    r = api.get("/docs")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/html")
    assert "/openapi.json" in r.text


def test_healthz(api: httpx.Client) -> None:
    r = api.get("/healthz")
    assert r.status_code == 200 and r.json()["status"] == "ok"


# --- the hub process ------------------------------------------------------------


def test_data_survives_a_restart(tmp_path: Path, start_hub: Callable[[Path], HubProcess]) -> None:
    data = tmp_path / "data"
    first = start_hub(data)
    with first.client() as api:
        node = create_node(api, id="keep", labels={"region": "eu"}, hardware={"cpu": {"cores": 4}})
        api.put("/api/v1/nodes/keep/status", json={"status": "online", "reason": "up"}).raise_for_status()
        api.patch("/api/v1/nodes/keep/labels", json={"set": {"rack": "r9"}}).raise_for_status()
        api.post(
            "/api/v1/platforms", json={"id": "dock", "name": "d", "config": {"k": "v"}}
        ).raise_for_status()
        api.post(
            "/api/v1/gamecards",
            json={
                "id": "quake",
                "name": "Quake",
                "platform": "dock",
                "versions": [{"version": "1.0.0", "image": "q:1"}],
            },
        ).raise_for_status()
        create_instance(api, "keep", id="i1", game="quake")
        create_node(api, id="gone")
        api.delete("/api/v1/nodes/gone").raise_for_status()
        before = {
            url: api.get(url).json()
            for url in (
                "/api/v1/nodes/keep",
                "/api/v1/nodes/keep/history",
                "/api/v1/platforms/dock",
                "/api/v1/gamecards/quake",
                "/api/v1/instances/i1",
                "/api/v1/nodes",
            )
        }
    assert before["/api/v1/nodes/keep"]["labels"] == {"region": "eu", "rack": "r9"}
    assert node["id"] == "keep"
    first.stop_cleanly()

    second = start_hub(data)
    with second.client() as api:
        after = {url: api.get(url).json() for url in before}
        assert_error(api.get("/api/v1/nodes/gone"), 404, "not_found")
    second.stop_cleanly()
    assert after == before


def test_second_hub_on_a_data_dir_in_use_fails(
    tmp_path: Path, start_hub: Callable[[Path], HubProcess], run_hub: RunHub
) -> None:
    first = start_hub(tmp_path / "data")
    result = run_hub(tmp_path / "data")
    assert result.returncode != 0
    assert f"pid {first.pid}" in result.stderr
    assert "gamenode: error:" in result.stderr
    assert "Traceback" not in result.stderr
    with first.client() as api:  # the first one carries on
        assert api.get("/healthz").status_code == 200
    first.stop_cleanly()


def test_hub_refuses_a_broken_yaml_file(tmp_path: Path, run_hub: RunHub) -> None:
    nodes = tmp_path / "data" / "nodes"
    nodes.mkdir(parents=True)
    (nodes / "ok.yaml").write_text("id: ok\nname: ok\ntype: physical\n")
    broken = nodes / "broken.yaml"
    broken.write_text("id: broken\nname: fine\nlabels: {region: eu\ntype: physical\n")
    result = run_hub(tmp_path / "data")
    assert result.returncode != 0
    assert f"{broken}:4" in result.stderr
    assert "Traceback" not in result.stderr
    assert "REST API on" not in result.stdout
    assert broken.read_text().startswith("id: broken")  # left as it was


def test_hub_refuses_an_invalid_record(tmp_path: Path, run_hub: RunHub) -> None:
    nodes = tmp_path / "data" / "nodes"
    nodes.mkdir(parents=True)
    broken = nodes / "n1.yaml"
    broken.write_text("id: n1\nname: n1\ntype: spaceship\n")
    result = run_hub(tmp_path / "data")
    assert result.returncode != 0
    assert f"{broken}:3" in result.stderr
    assert "type" in result.stderr
