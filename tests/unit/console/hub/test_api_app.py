"""The REST app in-process: error mapping, actors, labels, resources, the demo seed."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from console.errors import (
    Conflict,
    CorruptData,
    FieldError,
    GamenodeError,
    InvalidInput,
    NotFound,
    Unauthorized,
    Unavailable,
)
from console.hub.app import create_app
from console.hub.demo import seed_demo
from console.hub.errors import HTTP_STATUS
from console.service import Services
from console.store import Stores

ERROR_FIELDS = {"error", "message", "details"}


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
    return create_app(services)


@pytest.fixture
async def client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as client:
        yield client


async def post_node(
    client: httpx.AsyncClient, id: str = "n1", headers: dict[str, str] | None = None, **fields: Any
) -> dict[str, Any]:
    r = await client.post(
        "/api/v1/nodes", json={"id": id, "name": id, "type": "physical", **fields}, headers=headers
    )
    assert r.status_code == 201, r.text
    node: dict[str, Any] = r.json()
    return node


# --- error mapping --------------------------------------------------------------


def _all_subclasses(cls: type[GamenodeError]) -> list[type[GamenodeError]]:
    return [cls, *(sub for direct in cls.__subclasses__() for sub in _all_subclasses(direct))]


def test_every_error_code_has_an_http_status() -> None:
    for cls in _all_subclasses(GamenodeError):
        assert cls.code in HTTP_STATUS, cls


@pytest.mark.parametrize(
    ("error", "status", "code"),
    [
        (NotFound("widget", "w1"), 404, "not_found"),
        (Conflict("busy"), 409, "conflict"),
        (InvalidInput("bad"), 422, "invalid_input"),
        (Unauthorized("who are you"), 401, "unauthorized"),
        (Unavailable("held elsewhere"), 503, "unavailable"),
        (CorruptData("/x.yaml", "broken", 3), 500, "corrupt_data"),
        (GamenodeError("plain"), 500, "error"),
    ],
)
async def test_error_codes_map_to_http_statuses(
    app: FastAPI, client: httpx.AsyncClient, error: GamenodeError, status: int, code: str
) -> None:
    def boom() -> None:
        raise error

    app.add_api_route("/boom", boom)
    r = await client.get("/boom")
    assert r.status_code == status
    assert r.json() == {"error": code, "message": error.message, "details": []}


async def test_invalid_input_details_carry_paths(app: FastAPI, client: httpx.AsyncClient) -> None:
    def boom() -> None:
        raise InvalidInput(
            "invalid thing", [FieldError("steps[2].with.image", "field required"), FieldError("", "overall")]
        )

    app.add_api_route("/boom", boom)
    r = await client.get("/boom")
    assert r.status_code == 422
    assert r.json()["details"] == [
        {"path": "steps[2].with.image", "message": "field required"},
        {"path": "", "message": "overall"},
    ]
    assert r.json()["message"] == "invalid thing: steps[2].with.image: field required; overall"


async def test_request_validation_becomes_invalid_input(client: httpx.AsyncClient) -> None:
    r = await client.post("/api/v1/nodes", json={"id": "n1", "name": "n1", "type": "robot"})
    assert r.status_code == 422
    body = r.json()
    assert body["error"] == "invalid_input"
    assert [d["path"] for d in body["details"]] == ["body.type"]
    assert "'robot'" in body["details"][0]["message"]
    assert body["message"].startswith("invalid request: body.type: ")


@pytest.mark.parametrize(
    ("method", "url", "status", "code"),
    [
        ("GET", "/nowhere", 404, "not_found"),
        ("PATCH", "/api/v1/nodes", 405, "method_not_allowed"),
        ("DELETE", "/api/v1/nodes", 405, "method_not_allowed"),
    ],
)
async def test_routing_errors_have_the_error_shape(
    client: httpx.AsyncClient, method: str, url: str, status: int, code: str
) -> None:
    r = await client.request(method, url)
    assert r.status_code == status
    assert set(r.json()) == ERROR_FIELDS
    assert r.json()["error"] == code


async def test_store_refuses_maps_nested_too_deep_for_it(client: httpx.AsyncClient) -> None:
    deep = '{"a":' * 300 + "1" + "}" * 300
    r = await client.post(
        "/api/v1/nodes",
        content=f'{{"id":"n1","name":"n","type":"physical","hardware":{deep}}}',
        headers={"content-type": "application/json"},
    )
    assert r.status_code == 422
    assert r.json()["error"] == "invalid_input"
    assert (await client.get("/api/v1/nodes/n1")).status_code == 404


# --- who changed what ---------------------------------------------------------


async def test_actor_header_ends_up_in_history(client: httpx.AsyncClient) -> None:
    await post_node(client, headers={"X-Gamenode-Actor": "alice"})
    await client.put(
        "/api/v1/nodes/n1/status",
        json={"status": "online", "reason": "agent up"},
        headers={"X-Gamenode-Actor": "bob"},
    )
    await client.put("/api/v1/nodes/n1/status", json={"status": "maintenance", "reason": "disk swap"})
    await client.put("/api/v1/nodes/n1", json={"status": "ready"}, headers={"X-Gamenode-Actor": "x" * 100})
    await client.put(
        "/api/v1/nodes/n1/status", json={"status": "ready"}, headers={"X-Gamenode-Actor": "noop"}
    )

    r = await client.get("/api/v1/nodes/n1/history")
    assert r.status_code == 200
    changes = [(c["from_status"], c["to_status"], c["by"], c["reason"]) for c in r.json()]
    assert changes == [
        (None, "offline", "alice", "created"),
        ("offline", "online", "bob", "agent up"),
        ("online", "maintenance", "api", "disk swap"),
        ("maintenance", "ready", "x" * 64, "set by node update"),
    ]
    assert all(c["at"] for c in r.json())


async def test_history_goes_with_the_node(client: httpx.AsyncClient) -> None:
    await post_node(client)
    assert (await client.delete("/api/v1/nodes/n1")).status_code == 204
    assert (await client.get("/api/v1/nodes/n1/history")).status_code == 404
    await post_node(client)
    history = (await client.get("/api/v1/nodes/n1/history")).json()
    assert [c["reason"] for c in history] == ["created"]


# --- labels, resources, instances of a node -----------------------------------


async def test_labels_patch(client: httpx.AsyncClient) -> None:
    await post_node(client, labels={"region": "eu", "rack": "r1", "spot": "yes"})
    r = await client.patch(
        "/api/v1/nodes/n1/labels", json={"set": {"rack": "r2", "gpu": "l4"}, "remove": ["spot"]}
    )
    assert r.status_code == 200, r.text
    assert r.json()["labels"] == {"region": "eu", "rack": "r2", "gpu": "l4"}
    assert (await client.get("/api/v1/nodes/n1")).json()["labels"] == r.json()["labels"]

    r = await client.patch("/api/v1/nodes/n1/labels", json={"remove": ["absent"]})
    assert r.status_code == 200
    assert r.json()["labels"] == {"region": "eu", "rack": "r2", "gpu": "l4"}

    found = await client.get("/api/v1/nodes", params={"selector": "gpu=l4,rack=r2"})
    assert [n["id"] for n in found.json()] == ["n1"]


@pytest.mark.parametrize(
    ("body", "path"),
    [
        ({"set": {"bad key": "x"}}, "labels.bad key (key)"),
        ({"set": {"k": "bad value"}}, "labels.k"),
        ({"set": {"k": 1}}, "body.set.k"),
        ({"remove": "spot"}, "body.remove"),
        ({"remove": [1]}, "body.remove[0]"),
        ({"add": {"k": "v"}}, "body.add"),
    ],
)
async def test_labels_patch_refuses_bad_labels(
    client: httpx.AsyncClient, body: dict[str, Any], path: str
) -> None:
    await post_node(client, labels={"region": "eu"})
    r = await client.patch("/api/v1/nodes/n1/labels", json=body)
    assert r.status_code == 422, r.text
    assert path in [d["path"] for d in r.json()["details"]]
    assert (await client.get("/api/v1/nodes/n1")).json()["labels"] == {"region": "eu"}


async def test_node_resources(client: httpx.AsyncClient) -> None:
    hardware = {"cpu": {"model": "EPYC", "cores": 16}, "memory_mb": 65536, "gpus": [{"model": "L4"}] * 2}
    await post_node(client, hardware=hardware)
    r = await client.get("/api/v1/nodes/n1/resources")
    assert r.status_code == 200
    empty = {"cpu": 0.0, "memory_mb": 0, "gpu": 0}
    full = {"cpu": 16.0, "memory_mb": 65536, "gpu": 2}
    assert r.json() == {"capacity": full, "reserved": empty, "free": full}

    for id, need in (("a", {"cpu": 4, "memory_mb": 8192, "gpu": 1}), ("b", {"cpu": 2.5, "memory_mb": 1024})):
        r = await client.post("/api/v1/instances/register", json={"id": id, "node_id": "n1", "resources": need})
        assert r.status_code == 201, r.text
    r = await client.get("/api/v1/nodes/n1/resources")
    assert r.json()["reserved"] == {"cpu": 6.5, "memory_mb": 9216, "gpu": 1}
    assert r.json()["free"] == {"cpu": 9.5, "memory_mb": 56320, "gpu": 1}

    await client.put("/api/v1/instances/a/state", json={"state": "failed", "error": "crashed"})
    r = await client.get("/api/v1/nodes/n1/resources")
    assert r.json()["reserved"] == {"cpu": 2.5, "memory_mb": 1024, "gpu": 0}


async def test_node_without_inventory_has_no_capacity(client: httpx.AsyncClient) -> None:
    await post_node(client)
    r = await client.get("/api/v1/nodes/n1/resources")
    assert r.json()["capacity"] == {"cpu": 0.0, "memory_mb": 0, "gpu": 0}
    r = await client.post("/api/v1/instances/register", json={"node_id": "n1", "resources": {"cpu": 0.5}})
    assert r.status_code == 409
    assert "not enough room" in r.json()["message"]


async def test_instances_of_a_node(client: httpx.AsyncClient) -> None:
    await post_node(client, id="n1")
    await post_node(client, id="n2")
    for id, node in (("i2", "n1"), ("i1", "n1"), ("i3", "n2")):
        assert (await client.post("/api/v1/instances/register", json={"id": id, "node_id": node})).status_code == 201
    r = await client.get("/api/v1/nodes/n1/instances")
    assert r.status_code == 200
    assert [i["id"] for i in r.json()] == ["i1", "i2"]
    assert r.headers["X-Total-Count"] == "2"
    r = await client.get("/api/v1/nodes/n2/instances")
    assert [i["id"] for i in r.json()] == ["i3"]

    r = await client.get("/api/v1/nodes/ghost/instances")
    assert r.status_code == 404
    assert r.json()["error"] == "not_found"


async def test_instance_ids_are_generated(client: httpx.AsyncClient) -> None:
    await post_node(client)
    r = await client.post("/api/v1/instances/register", json={"node_id": "n1"})
    assert r.status_code == 201
    assert r.json()["id"].startswith("inst-")


# --- the demo seed ------------------------------------------------------------


def test_demo_seed_fills_an_empty_dir_once(services: Services) -> None:
    assert seed_demo(services) is True
    counts = (
        services.nodes.list_nodes().total,
        services.platforms.list_platforms().total,
        services.gamecards.list_cards().total,
        services.instances.list_instances().total,
    )
    assert counts == (6, 2, 3, 2)
    assert services.instances.get_instance("arena-eu-1").state == "running"
    assert services.nodes.get_node("ap-sgp-01").status == "maintenance"

    assert seed_demo(services) is False
    assert (
        services.nodes.list_nodes().total,
        services.platforms.list_platforms().total,
        services.gamecards.list_cards().total,
        services.instances.list_instances().total,
    ) == counts


def test_demo_seed_leaves_a_dir_with_nodes_alone(services: Services) -> None:
    services.nodes.create_node({"id": "mine", "name": "mine", "type": "virtual"})
    assert seed_demo(services) is False
    assert [n.id for n in services.nodes.list_nodes().items] == ["mine"]
    assert services.gamecards.list_cards().total == 0


async def test_demo_fleet_over_the_api(services: Services, client: httpx.AsyncClient) -> None:
    seed_demo(services)
    r = await client.get("/api/v1/nodes", params={"selector": "region=eu", "sort": "-status"})
    assert r.headers["X-Total-Count"] == "3"
    assert r.json()[0]["id"] == "eu-fra-01"  # the only ready one sorts first descending
    r = await client.get("/api/v1/nodes/eu-fra-01/resources")
    assert r.json()["reserved"] == {"cpu": 2.0, "memory_mb": 4096, "gpu": 0}
    r = await client.get("/api/v1/gamecards/kart-racer/default-version")
    assert r.json()["version"] == "1.0.0"
    r = await client.get("/api/v1/platforms/cloud-gpu/config/encoder")
    assert r.json() == {"value": "nvenc"}
    assert (await client.delete("/api/v1/nodes/eu-fra-01")).status_code == 409


def test_demo_seed_survives_reopening(tmp_path: Path) -> None:
    stores = Stores.open(tmp_path / "demo")
    try:
        assert seed_demo(Services.over(stores))
    finally:
        stores.close()
    stores = Stores.open(tmp_path / "demo")
    try:
        services = Services.over(stores)
        assert seed_demo(services) is False
        assert services.nodes.list_nodes().total == 6
        assert [c.by for c in services.nodes.status_history("eu-fra-01")] == ["demo"] * 3
    finally:
        stores.close()
