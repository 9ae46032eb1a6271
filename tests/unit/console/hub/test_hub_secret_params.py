"""Registry passwords in platform and game-version params (issue #7): `***` in every REST and gRPC answer.

The REST app runs over real stores, the real run service and a dispatcher that
records what RunPipeline would carry; the gRPC check runs the real hub. The
stores keep the real value, a write that sends `***` back keeps it, and a
launch gets it.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import pytest
from fastapi import FastAPI

from console.hub.app import create_app
from console.models import PipelineRun
from console.service import Services
from console.service.launch import LaunchService
from console.store import Stores
from proto import gamenode_pb2 as pb

if TYPE_CHECKING:
    from conftest import Hub

PLATFORM_PW = "Plat-pw.17"
VERSION_PW = "Vers-pw.42"
HW = {"cpu": {"cores": 4}, "memory_mb": 8192}


class RecordingDispatcher:
    """Every node connected; records what RunPipeline would carry."""

    def __init__(self) -> None:
        self.sent: list[tuple[PipelineRun, dict[str, Any]]] = []

    def connected(self, node_id: str) -> bool:
        return True

    def run_pipeline(self, run: PipelineRun, params: dict[str, Any]) -> None:
        self.sent.append((run, dict(params)))

    def cancel_run(self, run: PipelineRun, reason: str) -> None:
        pass


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    return tmp_path / "data"


@pytest.fixture
def services(data_dir: Path) -> Iterator[Services]:
    stores = Stores.open(data_dir)
    services = Services.over(stores)
    services.nodes.create_node({"id": "n1", "name": "n1", "type": "physical", "status": "ready", "hardware": HW})
    yield services
    stores.close()


@pytest.fixture
def dispatcher(services: Services) -> RecordingDispatcher:
    services.runs.dispatcher = dispatcher = RecordingDispatcher()
    return dispatcher


@pytest.fixture
def app(services: Services, dispatcher: RecordingDispatcher) -> FastAPI:
    app = create_app(services)
    app.state.launch = LaunchService.over(services, services.runs, lambda node_id: True)
    return app


@pytest.fixture
async def client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as client:
        yield client


async def ok(response: Any) -> Any:
    r: httpx.Response = await response
    assert r.status_code < 300, r.text
    return r.json() if r.content else None


async def create_game(client: httpx.AsyncClient) -> tuple[dict[str, Any], dict[str, Any]]:
    """The platform and card as the POSTs answered them."""
    platform = await ok(client.post("/api/v1/platforms", json={
        "id": "docker", "name": "docker", "params": {"registry_password": PLATFORM_PW, "registry_username": "bob"}}))
    card = await ok(client.post("/api/v1/gamecards", json={
        "id": "quake", "name": "quake", "platform": "docker",
        "versions": [{"version": "1.0.0", "image": "reg/quake:1", "params": {"registry_password": VERSION_PW}}]}))
    return platform, card


def files_holding(root: Path, needle: str) -> list[str]:
    found = (p for p in root.rglob("*") if p.is_file() and needle.encode() in p.read_bytes())
    return sorted(str(p.relative_to(root)) for p in found)


async def test_every_answer_shows_stars(client: httpx.AsyncClient, services: Services) -> None:
    platform, card = await create_game(client)
    assert platform["params"] == {"registry_password": "***", "registry_username": "bob"}
    assert card["versions"][0]["params"] == {"registry_password": "***"}

    answers = [
        await ok(client.get("/api/v1/platforms")),
        await ok(client.get("/api/v1/platforms/docker")),
        await ok(client.put("/api/v1/platforms/docker/state", json={"state": "enabled"})),
        await ok(client.get("/api/v1/gamecards")),
        await ok(client.get("/api/v1/gamecards/quake")),
        await ok(client.get("/api/v1/gamecards/quake/versions")),
        await ok(client.get("/api/v1/gamecards/quake/default-version")),
        await ok(client.put("/api/v1/gamecards/quake/default-version", json={"version": "1.0.0"})),
        await ok(client.put("/api/v1/gamecards/quake/versions/1.0.0/status", json={"status": "active"})),
        await ok(client.post("/api/v1/gamecards/quake/versions", json={"version": "2.0.0", "image": "reg/quake:2"})),
        await ok(client.delete("/api/v1/gamecards/quake/versions/2.0.0")),
    ]
    for answer in answers:
        text = json.dumps(answer)
        assert PLATFORM_PW not in text and VERSION_PW not in text and '"***"' in text, text
    assert services.platforms.get_platform("docker").params["registry_password"] == PLATFORM_PW
    assert services.gamecards.get_card("quake").versions[0].params["registry_password"] == VERSION_PW


async def test_a_write_back_keeps_the_secret_and_a_new_value_replaces_it(
    client: httpx.AsyncClient, services: Services
) -> None:
    platform, card = await create_game(client)
    edited = await ok(client.put("/api/v1/platforms/docker", json={**platform, "description": "edited"}))
    assert (edited["description"], edited["params"]["registry_password"]) == ("edited", "***")
    card["versions"][0]["params"]["registry_password"] = "***"
    await ok(client.put("/api/v1/gamecards/quake", json={**card, "description": "edited"}))
    assert services.platforms.get_platform("docker").params["registry_password"] == PLATFORM_PW
    assert services.gamecards.get_card("quake").versions[0].params["registry_password"] == VERSION_PW

    platform["params"]["registry_password"] = "n3w-pw"
    card["versions"][0]["params"]["registry_password"] = "n3w-vpw"
    assert (await ok(client.put("/api/v1/platforms/docker", json=platform)))["params"]["registry_password"] == "***"
    await ok(client.put("/api/v1/gamecards/quake", json=card))
    assert services.platforms.get_platform("docker").params["registry_password"] == "n3w-pw"
    assert services.gamecards.get_card("quake").versions[0].params["registry_password"] == "n3w-vpw"


async def test_stars_with_nothing_stored_is_422(client: httpx.AsyncClient) -> None:
    await create_game(client)
    r = await client.post("/api/v1/gamecards/quake/versions", json={
        "version": "2.0.0", "image": "reg/quake:2", "params": {"registry_password": "***"}})
    assert r.status_code == 422, r.text
    assert [d["path"] for d in r.json()["details"]] == ["params.registry_password"]


async def test_a_launch_gets_the_real_value_and_nothing_answers_it(
    client: httpx.AsyncClient, dispatcher: RecordingDispatcher, data_dir: Path
) -> None:
    platform, card = await create_game(client)
    await ok(client.put("/api/v1/platforms/docker", json=platform))  # written back with `***`
    card["versions"][0]["params"] = {}  # the platform's password then
    await ok(client.put("/api/v1/gamecards/quake", json=card))

    answer = await ok(client.post("/api/v1/instances", json={"game": "quake"}))
    [(run, params)] = dispatcher.sent
    assert (params["registry_password"], params["image"]) == (PLATFORM_PW, "reg/quake:1")
    shown = await ok(client.get(f"/api/v1/runs/{answer['run_id']}"))
    assert shown["params"]["registry_password"] == "***" == answer["instance"]["params"]["registry_password"]
    # on disk: the platform's record, and the run's secret side file until its agent acks
    assert files_holding(data_dir, PLATFORM_PW) == ["platforms/docker.yaml", f"run-secrets/{run.id}.yaml"]


async def test_grpc_list_game_cards_is_redacted(hub: Hub, hub_stub: Any) -> None:
    hub.services.platforms.create_platform({"id": "docker", "name": "docker"})
    hub.services.gamecards.create_card({"id": "quake", "name": "quake", "platform": "docker", "versions": [
        {"version": "1.0.0", "image": "reg/quake:1", "params": {"registry_password": VERSION_PW, "port": 27960}}]})
    answer = await hub_stub.ListGameCards(pb.ListGameCardsRequest())
    assert VERSION_PW not in answer.json
    assert json.loads(answer.json)[0]["versions"][0]["params"] == {"registry_password": "***", "port": 27960}
    assert hub.services.gamecards.get_card("quake").versions[0].params["registry_password"] == VERSION_PW
