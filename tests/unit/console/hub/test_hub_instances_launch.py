"""REST: launching (POST /api/v1/instances), stopping (DELETE) and container actions, with fake agents.

The app runs over real stores and the real run service; the agents are fakes:
a dispatcher that records what would be sent, and a container agent that acks
as told.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from console.hub.app import create_app
from console.models import InstanceState, PipelineRun
from console.service import Services
from console.service.launch import CommandResult, ContainerAction, LaunchService
from console.store import Stores

S = InstanceState
HW = {"cpu": {"cores": 4}, "memory_mb": 8192}


class FakeDispatcher:
    """Records RunPipeline and CancelRun instead of sending them."""

    def __init__(self, online: set[str]) -> None:
        self.online = online
        self.sent: list[str] = []
        self.cancelled: list[str] = []

    def connected(self, node_id: str) -> bool:
        return node_id in self.online

    def run_pipeline(self, run: PipelineRun, params: dict[str, Any]) -> None:
        self.sent.append(run.id)

    def cancel_run(self, run: PipelineRun, reason: str) -> None:
        self.cancelled.append(run.id)


class FakeAgent:
    def __init__(self) -> None:
        self.result = CommandResult(ok=True)
        self.hang = False
        self.calls: list[tuple[str, ContainerAction]] = []

    async def container_action(
        self, node_id: str, action: ContainerAction, instance_id: str, container_id: str
    ) -> CommandResult:
        self.calls.append((instance_id, action))
        if self.hang:
            await asyncio.Event().wait()
        return self.result


class Fleet:
    def __init__(self, services: Services) -> None:
        self.services = services
        self.online = {"n1", "n2"}
        self.dispatcher = FakeDispatcher(self.online)
        self.agent = FakeAgent()
        services.runs.dispatcher = self.dispatcher
        self.launcher = LaunchService.over(services, services.runs, self.online.__contains__, self.agent)
        self.launcher.action_timeout = 0.05

    def running(self, instance_id: str) -> None:
        """The instance's start run succeeded, as far as the instance knows."""
        for state in (S.PREPARING, S.STARTING, S.RUNNING):
            self.services.instances.transition(instance_id, state, container_id="c1")


@pytest.fixture
def services(tmp_path: Path) -> Iterator[Services]:
    stores = Stores.open(tmp_path / "data")
    services = Services.over(stores)
    services.nodes.create_node({"id": "n1", "name": "n1", "type": "physical", "status": "ready",
                                "hardware": HW, "labels": {"region": "eu"}})
    services.nodes.create_node({"id": "n2", "name": "n2", "type": "physical", "status": "maintenance",
                                "hardware": HW})
    services.platforms.create_platform({"id": "docker", "name": "docker"})
    services.gamecards.create_card({"id": "quake", "name": "quake", "platform": "docker", "versions": [
        {"version": "1.0.0", "image": "reg/quake:1", "resources": {"cpu": 2, "memory_mb": 1024}},
    ]})
    yield services
    stores.close()


@pytest.fixture
def fleet(services: Services) -> Fleet:
    return Fleet(services)


@pytest.fixture
def app(services: Services, fleet: Fleet) -> FastAPI:
    app = create_app(services)
    app.state.launch = fleet.launcher
    return app


@pytest.fixture
async def client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as client:
        yield client


async def launch(client: httpx.AsyncClient, **body: Any) -> dict[str, Any]:
    r = await client.post("/api/v1/instances", json={"game": "quake", **body}, headers={"X-Gamenode-Actor": "ann"})
    assert r.status_code == 201, r.text
    answer: dict[str, Any] = r.json()
    return answer


# --- launch -------------------------------------------------------------------


async def test_launch_answers_the_instance_and_its_run(client: httpx.AsyncClient, fleet: Fleet) -> None:
    answer = await launch(client, policy="pack", params={"port": 9000})
    instance = answer["instance"]
    assert set(answer) == {"instance", "run_id"}
    assert (instance["node_id"], instance["state"], instance["game_version"]) == ("n1", "pending", "1.0.0")
    assert instance["run_id"] == answer["run_id"] and fleet.dispatcher.sent == [answer["run_id"]]
    assert instance["params"]["port"] == 9000
    run = fleet.services.runs.get_run(answer["run_id"])
    assert (run.created_by, run.pipeline) == ("ann", "platform-start")


async def test_no_fit_is_409_with_a_reason_per_node(client: httpx.AsyncClient) -> None:
    await launch(client)
    await launch(client)
    r = await client.post("/api/v1/instances", json={"game": "quake"})
    assert r.status_code == 409
    body = r.json()
    assert body["error"] == "conflict"
    assert body["details"] == [
        {"path": "n1", "message": "needs 2 CPU (0 free)"},
        {"path": "n2", "message": "in maintenance"},
    ]
    assert "n1: needs 2 CPU (0 free); n2: in maintenance" in body["message"]


@pytest.mark.parametrize(
    ("body", "status", "path"),
    [
        ({}, 422, "body.game"),
        ({"game": "quake", "policy": "random"}, 422, "body.policy"),
        ({"game": "quake", "surprise": 1}, 422, "body.surprise"),
        ({"game": "quake", "selector": "region in eu"}, 422, None),
        ({"game": "doom"}, 404, None),
        ({"game": "quake", "version": "9.0.0"}, 404, None),
        ({"game": "quake", "node_id": "n2"}, 409, "n2"),
    ],
)
async def test_launch_refusals(client: httpx.AsyncClient, body: dict[str, Any], status: int, path: str | None) -> None:
    r = await client.post("/api/v1/instances", json=body)
    assert r.status_code == status, r.text
    if path is not None:
        assert path in [d["path"] for d in r.json()["details"]]
    assert (await client.get("/api/v1/instances")).json() == []


async def test_register_only_records(client: httpx.AsyncClient, fleet: Fleet) -> None:
    r = await client.post("/api/v1/instances/register", json={"node_id": "n1", "resources": {"cpu": 1}})
    assert r.status_code == 201 and r.json()["state"] == "pending" and r.json()["run_id"] is None
    assert fleet.dispatcher.sent == []


# --- stop ---------------------------------------------------------------------


async def test_delete_runs_the_stop_pipeline(client: httpx.AsyncClient, fleet: Fleet) -> None:
    instance = (await launch(client))["instance"]
    fleet.running(instance["id"])
    r = await client.delete(f"/api/v1/instances/{instance['id']}")
    assert r.status_code == 202, r.text
    assert r.json()["instance"]["state"] == "stopping" and r.json()["deleted"] is False
    stop_run = fleet.services.runs.get_run(r.json()["run_id"])
    assert (stop_run.pipeline, stop_run.instance_id, stop_run.params["container"]) == (
        "platform-stop", instance["id"], "c1")


async def test_delete_of_a_starting_instance_cancels_its_start(client: httpx.AsyncClient, fleet: Fleet) -> None:
    answer = await launch(client)
    r = await client.delete(f"/api/v1/instances/{answer['instance']['id']}")
    assert r.status_code == 202 and r.json()["run_id"] == answer["run_id"]
    assert fleet.dispatcher.cancelled == [answer["run_id"]]


async def test_delete_of_a_finished_instance_deletes_the_record(client: httpx.AsyncClient, fleet: Fleet) -> None:
    id = (await launch(client))["instance"]["id"]
    fleet.services.instances.transition(id, S.FAILED, "boom")
    r = await client.delete(f"/api/v1/instances/{id}")
    assert r.status_code == 204 and r.content == b""
    assert (await client.get(f"/api/v1/instances/{id}")).status_code == 404
    assert (await client.delete(f"/api/v1/instances/{id}")).status_code == 404


async def test_delete_on_an_offline_node_needs_force(client: httpx.AsyncClient, fleet: Fleet) -> None:
    id = (await launch(client))["instance"]["id"]
    fleet.running(id)
    fleet.online.clear()
    r = await client.delete(f"/api/v1/instances/{id}")
    assert r.status_code == 409 and "force" in r.json()["message"]
    r = await client.delete(f"/api/v1/instances/{id}", params={"force": "true"})
    assert r.status_code == 200, r.text
    assert (r.json()["instance"]["state"], r.json()["run_id"]) == ("stopped", None)
    free = (await client.get("/api/v1/nodes/n1/resources")).json()["free"]
    assert free["cpu"] == 4


# --- container actions ------------------------------------------------------------


@pytest.mark.parametrize(("action", "state"), [("stop", "stopped"), ("remove", "stopped"), ("restart", "running")])
async def test_actions(client: httpx.AsyncClient, fleet: Fleet, action: str, state: str) -> None:
    id = (await launch(client))["instance"]["id"]
    fleet.running(id)
    r = await client.post(f"/api/v1/instances/{id}/actions", json={"action": action})
    assert r.status_code == 200, r.text
    assert r.json()["state"] == state
    assert fleet.agent.calls == [(id, ContainerAction(action))]


async def test_action_errors(client: httpx.AsyncClient, fleet: Fleet) -> None:
    id = (await launch(client))["instance"]["id"]
    fleet.running(id)
    url = f"/api/v1/instances/{id}/actions"
    r = await client.post(url, json={"action": "explode"})
    assert r.status_code == 422 and r.json()["details"][0]["path"] == "body.action"
    fleet.agent.result = CommandResult(ok=False, error="no such container")
    r = await client.post(url, json={"action": "stop"})
    assert r.status_code == 409 and r.json()["message"].endswith(": no such container")
    fleet.agent.hang = True
    r = await client.post(url, json={"action": "restart"})
    assert r.status_code == 504 and r.json()["error"] == "timeout"
    fleet.online.clear()
    r = await client.post(url, json={"action": "stop"})
    assert r.status_code == 409 and "offline" in r.json()["message"]
    assert (await client.post("/api/v1/instances/ghost/actions", json={"action": "stop"})).status_code == 404
