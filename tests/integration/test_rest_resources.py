"""Instances, game cards and platforms over the REST API of a real hub.

The tests share the session's hub and keep to ids of their own.
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from rest_helpers import assert_error, create_instance, create_node, paths, uid

# --- instances ----------------------------------------------------------------


@pytest.fixture
def small_node(api: httpx.Client) -> dict[str, Any]:
    """4 cores, 8 GiB, no GPU."""
    return create_node(api, hardware={"cpu": {"cores": 4}, "memory_mb": 8192})


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
    assert "offline" in assert_error(api.delete(f"/api/v1/instances/{id}"), 409, "conflict")["message"]

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
        api.post("/api/v1/instances/register", json={"node_id": small_node["id"], "resources": {"cpu": 2}}),
        409,
        "conflict",
    )["message"]
    assert "CPU" in message
    assert_error(
        api.post("/api/v1/instances/register", json={"node_id": small_node["id"], "resources": {"memory_mb": 8192}}),
        409,
        "conflict",
    )
    assert_error(
        api.post("/api/v1/instances/register", json={"node_id": small_node["id"], "resources": {"gpu": 1}}),
        409,
        "conflict",
    )
    create_instance(api, small_node["id"], resources={"cpu": 1, "memory_mb": 4096})  # exactly full

    # a stopped instance gives its resources back
    set_state(api, first["id"], "failed").raise_for_status()
    create_instance(api, small_node["id"], resources={"cpu": 3})


def test_instance_errors(api: httpx.Client, small_node: dict[str, Any]) -> None:
    assert_error(api.post("/api/v1/instances/register", json={"node_id": uid("ghost")}), 404, "not_found")
    r = api.post("/api/v1/instances/register", json={"node_id": small_node["id"], "resources": {"cpu": -1}})
    assert_error(r, 422, "invalid_input")
    assert paths(r) == ["body.resources.cpu"]
    r = api.post("/api/v1/instances/register", json={"node_id": small_node["id"], "ports": [{"container_port": 0}]})
    assert paths(r) == ["body.ports[0].container_port"]
    inst = create_instance(api, small_node["id"])
    dup = api.post("/api/v1/instances/register", json={"node_id": small_node["id"], "id": inst["id"]})
    assert_error(dup, 409, "conflict")
    assert_error(api.put(f"/api/v1/instances/{inst['id']}", json={"node_id": "x"}), 422, "invalid_input")
    api.put(f"/api/v1/nodes/{small_node['id']}/status", json={"status": "maintenance", "reason": "t"})
    assert (
        "maintenance"
        in assert_error(api.post("/api/v1/instances/register", json={"node_id": small_node["id"]}), 409, "conflict")[
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
        api.post("/api/v1/instances/register", json={"node_id": node["id"], "game": card, "game_version": "1.1.0"}),
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
            api.post("/api/v1/instances/register", json={"node_id": plain["id"], "platform": id}), 409, "conflict"
        )["message"]
    )
    create_instance(api, gpu["id"], platform=id)
    api.put(f"/api/v1/platforms/{id}/state", json={"state": "disabled"}).raise_for_status()
    assert (
        "disabled"
        in assert_error(
            api.post("/api/v1/instances/register", json={"node_id": gpu["id"], "platform": id}), 409, "conflict"
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
