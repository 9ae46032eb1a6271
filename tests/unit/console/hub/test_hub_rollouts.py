"""Rollouts through the hub: REST (start, read, list, cancel, errors), gRPC (StartRollout, GetRollout,
WatchRollout), with a fake runner in place of `bootstrap.Rollout`; nodes' `ssh` over REST; the agent's
version recorded on connect."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
import httpx
import pytest
from conftest import WAIT, Hub
from grpc import aio

from proto import gamenode_pb2 as pb
from proto import gamenode_pb2_grpc as pb_grpc

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "service"))
from rollout_fakes import FakeRunner, fake_bundle

SSH = {"host": "127.0.0.1", "port": 2201, "user": "ops", "prefix": "/srv/gn"}


@pytest.fixture
async def api(hub: Hub) -> AsyncIterator[httpx.AsyncClient]:
    hub.services.rollouts.bundle_source = fake_bundle
    async with await hub.client() as client:
        yield client


async def add_node(api: httpx.AsyncClient, id: str, **fields: Any) -> dict[str, Any]:
    r = await api.post("/api/v1/nodes", json={"id": id, "name": id, "type": "physical", "ssh": SSH, **fields})
    assert r.status_code == 201, r.text
    node: dict[str, Any] = r.json()
    return node


async def wait_finished(api: httpx.AsyncClient, rollout_id: str) -> dict[str, Any]:
    async def poll() -> dict[str, Any]:
        while True:
            record: dict[str, Any] = (await api.get(f"/api/v1/rollouts/{rollout_id}")).json()
            if record["state"] in ("succeeded", "failed", "cancelled"):
                return record
            await asyncio.sleep(0.01)

    return await asyncio.wait_for(poll(), WAIT)


# --- nodes' ssh over REST -------------------------------------------------------------------


async def test_a_go_style_node_without_ssh_has_no_ssh_field(api: httpx.AsyncClient) -> None:
    body = {"id": "go", "name": "go", "model": "", "type": "physical", "status": "", "location": "",
            "hardware": None, "network": None, "resources": None, "metrics": None, "labels": None,
            "online": False, "last_online": None, "created_at": "0001-01-01T00:00:00Z",
            "updated_at": "0001-01-01T00:00:00Z"}
    r = await api.post("/api/v1/nodes", json=body)
    assert r.status_code == 201, r.text
    assert "ssh" not in r.json()
    r = await api.put("/api/v1/nodes/go", json={**body, "name": "renamed"})
    assert r.status_code == 200 and "ssh" not in r.json() and r.json()["name"] == "renamed"


async def test_ssh_is_created_updated_and_removed(api: httpx.AsyncClient) -> None:
    node = await add_node(api, "s1")
    assert node["ssh"] == {**SSH, "identity_file": None, "use_agent": False, "jump_host": None, "sudo": False,
                           "python": "python3"}
    r = await api.put("/api/v1/nodes/s1", json={"ssh": {"host": "h2", "jump_host": "admin@bastion:2022"}})
    assert r.status_code == 200 and r.json()["ssh"]["host"] == "h2" and r.json()["ssh"]["port"] == 22
    assert (await api.get("/api/v1/nodes/s1")).json()["ssh"]["jump_host"] == "admin@bastion:2022"
    r = await api.put("/api/v1/nodes/s1", json={"ssh": None})
    assert r.status_code == 200 and "ssh" not in r.json()


@pytest.mark.parametrize(("ssh", "path"), [
    ({"host": ""}, "ssh.host"),
    ({"host": "h", "port": 70000}, "ssh.port"),
    ({"host": "h", "prefix": "/"}, "ssh.prefix"),
    ({"host": "h", "prefix": "opt/gamenode"}, "ssh.prefix"),
    ({"host": "h", "jump_host": "a@b@c"}, "ssh.jump_host"),
    ({"host": "h", "colour": "red"}, "ssh.colour"),
])
async def test_bad_ssh_fields_are_422_with_their_path(api: httpx.AsyncClient, ssh: dict[str, Any], path: str) -> None:
    r = await api.post("/api/v1/nodes", json={"id": "bad", "name": "b", "type": "physical", "ssh": ssh})
    assert r.status_code == 422, r.text
    assert f"body.{path}" in [d["path"] for d in r.json()["details"]]


# --- the agent's version ----------------------------------------------------------------------


async def test_the_agents_version_and_capabilities_are_recorded_on_connect(hub: Hub, api: httpx.AsyncClient) -> None:
    agent = hub.make_agent("n1", hardware={"cpu": {"cores": 4}})
    await agent.connect(agent_version="1.2.3", capabilities=["docker", "metrics"])
    await hub.settle()
    node = (await api.get("/api/v1/nodes/n1")).json()
    agent_info = {"version": "1.2.3", "capabilities": ["docker", "metrics"]}
    assert node["hardware"] == {"cpu": {"cores": 4}, "agent": agent_info}
    stored = hub.node("n1")

    await agent.close()
    await agent.ended()
    await hub.settle()
    again = hub.make_agent("n1", identity=agent.identity, create=False)
    await again.connect(agent_version="1.2.3", capabilities=["docker", "metrics"])
    await again.sync()
    await hub.settle()
    assert hub.node("n1").hardware == stored.hardware  # the same: not written again
    assert hub.node("n1").updated_at == hub.node("n1").last_online

    upgraded = hub.make_agent("n1", identity=agent.identity, create=False)
    await upgraded.connect(agent_version="1.3.0")
    await hub.settle()
    assert hub.node("n1").hardware["agent"] == {"version": "1.3.0", "capabilities": []}


# --- REST -------------------------------------------------------------------------------------


async def test_post_a_rollout_then_follow_it_to_the_end(hub: Hub, api: httpx.AsyncClient) -> None:
    await add_node(api, "a", labels={"region": "eu"})
    await add_node(api, "b", labels={"region": "eu"})
    runner = hub.services.rollouts.runner = FakeRunner({"b": "failed"})
    r = await api.post("/api/v1/rollouts", json={"selector": "region=eu", "parallel": 2, "canary": 1},
                       headers={"Authorization": f"Bearer {hub.token('alice')}"})
    assert r.status_code == 202, r.text
    started = r.json()
    assert started["state"] == "pending" and started["created_by"] == "alice"
    assert [h["node_id"] for h in started["hosts"]] == ["a", "b"]
    done = await wait_finished(api, started["id"])
    assert done["state"] == "failed" and done["version"] == "9.9.9"
    assert [(h["result"], h["error"]) for h in done["hosts"]] == [("installed", ""), ("failed", "boom")]
    assert runner.plans[0].hub_address == hub.runtime.grpc_address
    listed = await api.get("/api/v1/rollouts", params={"node_id": "b"})
    assert [x["id"] for x in listed.json()] == [started["id"]] and listed.headers["X-Total-Count"] == "1"
    r = await api.post(f"/api/v1/rollouts/{started['id']}/cancel")
    assert r.status_code == 409 and r.json()["error"] == "conflict"


async def test_rollout_errors_are_4xx(hub: Hub, api: httpx.AsyncClient) -> None:
    await add_node(api, "a")
    hub.services.rollouts.runner = FakeRunner(hold=True)
    r = await api.post("/api/v1/rollouts", json={"nodes": ["a", "ghost"]})
    assert r.status_code == 422 and [d["path"] for d in r.json()["details"]] == ["ghost"]
    r = await api.post("/api/v1/rollouts", json={})
    assert r.status_code == 422 and "exactly one of" in r.json()["message"]
    r = await api.post("/api/v1/rollouts", json={"nodes": ["a"], "action": "explode"})
    assert r.status_code == 422
    first = await api.post("/api/v1/rollouts", json={"nodes": ["a"]})
    assert first.status_code == 202
    r = await api.post("/api/v1/rollouts", json={"nodes": ["a"]})
    assert r.status_code == 409 and r.json()["details"][0]["path"] == "a"
    assert (await api.get("/api/v1/rollouts/ro-nope")).status_code == 404
    r = await api.post(f"/api/v1/rollouts/{first.json()['id']}/cancel")
    assert r.status_code == 200
    assert (await wait_finished(api, first.json()["id"]))["state"] == "cancelled"


async def test_ssh_host_key_routes_need_ssh_and_a_reachable_sshd(api: httpx.AsyncClient) -> None:
    await api.post("/api/v1/nodes", json={"id": "plain", "name": "p", "type": "physical"})
    r = await api.get("/api/v1/nodes/plain/ssh/host-key")
    assert r.status_code == 422 and "no ssh access" in r.json()["message"]
    await add_node(api, "dead", ssh={"host": "127.0.0.1", "port": 1})
    r = await api.post("/api/v1/nodes/dead/ssh/trust", json={"fingerprint": "SHA256:x"})
    assert r.status_code == 503
    assert (await api.get("/api/v1/nodes/ghost/ssh/host-key")).status_code == 404


# --- gRPC -------------------------------------------------------------------------------------


async def test_watch_rollout_sends_the_state_then_every_change_until_finished(
    hub: Hub, api: httpx.AsyncClient, hub_stub: pb_grpc.HubServiceStub
) -> None:
    await add_node(api, "a")
    runner = hub.services.rollouts.runner = FakeRunner(hold=True)
    started = await hub_stub.StartRollout(pb.StartRolloutRequest(nodes=["a"], trust_new_host_keys=True))
    assert started.state == "pending" and started.hosts[0].steps[0].name == "connect"
    await asyncio.wait_for(runner.started.wait(), WAIT)
    assert runner.plans[0].trust_new_host_keys and runner.plans[0].timeout == 120.0
    watch = hub_stub.WatchRollout(pb.GetRolloutRequest(rollout_id=started.id))
    first = await asyncio.wait_for(watch.read(), WAIT)
    assert first.state == "running" and first.hosts[0].steps[0].state == pb.STEP_STATE_RUNNING
    runner.release.set()
    seen = [first]
    while (message := await asyncio.wait_for(watch.read(), WAIT)) is not aio.EOF:
        seen.append(message)
    assert seen[-1].state == "succeeded" and seen[-1].hosts[0].result == "installed"
    assert seen[-1].HasField("finished_at") and seen[-1].version == "9.9.9"
    got = await hub_stub.GetRollout(pb.GetRolloutRequest(rollout_id=started.id))
    assert got == seen[-1]


async def test_grpc_rollout_errors(hub: Hub, api: httpx.AsyncClient, hub_stub: pb_grpc.HubServiceStub) -> None:
    with pytest.raises(aio.AioRpcError) as missing:
        await hub_stub.GetRollout(pb.GetRolloutRequest(rollout_id="ro-nope"))
    assert missing.value.code() == grpc.StatusCode.NOT_FOUND
    with pytest.raises(aio.AioRpcError) as invalid:
        await hub_stub.StartRollout(pb.StartRolloutRequest(nodes=["ghost"]))
    assert invalid.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "ghost" in (invalid.value.details() or "")
    with pytest.raises(aio.AioRpcError) as watch_missing:
        await hub_stub.WatchRollout(pb.GetRolloutRequest(rollout_id="ro-nope")).read()
    assert watch_missing.value.code() == grpc.StatusCode.NOT_FOUND


async def test_cancel_rollout_over_grpc(hub: Hub, api: httpx.AsyncClient, hub_stub: pb_grpc.HubServiceStub) -> None:
    await add_node(api, "a")
    runner = hub.services.rollouts.runner = FakeRunner(hold=True)
    started = await hub_stub.StartRollout(pb.StartRolloutRequest(nodes=["a"], action="install", parallel=1))
    await asyncio.wait_for(runner.started.wait(), WAIT)
    await hub_stub.CancelRollout(pb.GetRolloutRequest(rollout_id=started.id))
    done = await wait_finished(api, started.id)
    assert done["state"] == "cancelled" and done["hosts"][0]["result"] == "cancelled"
