"""The hub as a process: OpenAPI, docs and health, restarts, and refusing to start.

The OpenAPI tests share the session's hub; the persistence and start-up tests
run hubs of their own (`start_hub`, `run_hub`).
"""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import httpx
from rest_helpers import SEED_FIELDS, assert_error, create_instance, create_node

if TYPE_CHECKING:
    from conftest import HubProcess

    RunHub = Callable[[Path], subprocess.CompletedProcess[str]]


# --- OpenAPI ------------------------------------------------------------------


EXPECTED_ROUTES = {
    "/api/v1/nodes": {"get", "post"},
    "/api/v1/nodes/{node_id}": {"get", "put", "delete"},
    "/api/v1/nodes/{node_id}/status": {"put"},
    "/api/v1/nodes/{node_id}/history": {"get"},
    "/api/v1/nodes/{node_id}/labels": {"patch"},
    "/api/v1/nodes/{node_id}/resources": {"get"},
    "/api/v1/nodes/{node_id}/instances": {"get"},
    "/api/v1/nodes/{node_id}/token": {"post", "delete"},
    "/api/v1/nodes/{node_id}/metrics": {"get"},
    "/api/v1/nodes/{node_id}/ping": {"post"},
    "/api/v1/instances": {"get", "post"},
    "/api/v1/instances/{instance_id}": {"get", "put", "delete"},
    "/api/v1/instances/{instance_id}/state": {"put"},
    "/api/v1/instances/register": {"post"},
    "/api/v1/instances/{instance_id}/actions": {"post"},
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
    "/api/v1/nodes/{node_id}/pipelines": {"post"},
    "/api/v1/runs": {"get"},
    "/api/v1/runs/{run_id}": {"get"},
    "/api/v1/runs/{run_id}/cancel": {"post"},
    "/api/v1/pipelines": {"get"},
    "/api/v1/pipelines/{name}": {"get"},
    "/api/v1/logs": {"get"},
    "/api/v1/rollouts": {"get", "post"},
    "/api/v1/rollouts/{rollout_id}": {"get"},
    "/api/v1/rollouts/{rollout_id}/cancel": {"post"},
    "/api/v1/nodes/{node_id}/ssh/host-key": {"get"},
    "/api/v1/nodes/{node_id}/ssh/trust": {"post"},
    "/api/v1/tokens": {"get", "post"},
    "/api/v1/tokens/{token_id}": {"delete"},
    "/api/v1/audit": {"get"},
    "/metrics": {"get"},
    "/healthz": {"get"},
}


def test_openapi_lists_every_route(api: httpx.Client) -> None:
    r = api.get("/openapi.json")
    assert r.status_code == 200
    spec = r.json()
    assert {path: set(ops) for path, ops in spec["paths"].items()} == EXPECTED_ROUTES
    node_schema = spec["components"]["schemas"]["GameNode"]
    assert set(node_schema["properties"]) == SEED_FIELDS | {"ssh"}  # ssh: left out of answers while unset


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
