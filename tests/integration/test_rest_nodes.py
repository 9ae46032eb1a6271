"""The seed's node endpoints on a real hub: fields, Go-client bodies, filters and paging.

The tests share the session's hub and keep to ids of their own.
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from rest_helpers import SEED_FIELDS, assert_error, create_node, uid

GO_ZERO_TIME = "0001-01-01T00:00:00Z"


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
