"""The Hub process in-process: gRPC and REST from one loop, ready line data, clean stop."""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path
from typing import TYPE_CHECKING

import grpc
import httpx
import pytest

from console.hub.listen import ListenError
from console.hub.server import Hub
from console.settings import HubSettings
from console.store import Stores

if TYPE_CHECKING:
    from conftest import FakeAgent

WAIT = 30.0


def settings(tmp_path: Path, **overrides: str) -> HubSettings:
    fields = {"data_dir": tmp_path / "data", "http_listen": "127.0.0.1:0", "grpc_listen": "127.0.0.1:0", **overrides}
    return HubSettings(**fields)  # type: ignore[arg-type]


async def start(hub: Hub) -> asyncio.Task[None]:
    ready = asyncio.Event()
    task = asyncio.create_task(hub.run(on_ready=lambda _: ready.set()))
    done, _ = await asyncio.wait({task, asyncio.create_task(ready.wait())}, timeout=WAIT,
                                 return_when=asyncio.FIRST_COMPLETED)
    if task in done:
        task.result()
    assert ready.is_set()
    return task


async def test_one_loop_serves_agents_and_rest_and_stops_cleanly(
    tmp_path: Path, fake_agent: type[FakeAgent]
) -> None:
    hub = Hub(settings(tmp_path), freeze_gc=False)
    task = await start(hub)
    assert hub.http_url.startswith("http://127.0.0.1:") and not hub.http_url.endswith(":0")
    host, port = hub.grpc_address.rsplit(":", 1)
    assert host == "127.0.0.1" and int(port) > 0

    assert hub.runtime is not None and hub.agent_address == hub.runtime.agent_address
    agent_host, agent_port = hub.agent_address.rsplit(":", 1)
    assert agent_host == "127.0.0.1" and int(agent_port) not in (0, int(port))

    admin = (tmp_path / "data" / "admin.token").read_text().strip()
    async with httpx.AsyncClient(base_url=hub.http_url, timeout=WAIT,
                                 headers={"Authorization": f"Bearer {admin}"}) as api:
        assert (await api.post("/api/v1/nodes", json={"id": "n1", "name": "n1", "type": "physical"})).is_success
        token = (await api.post("/api/v1/nodes/n1/token")).json()["token"]
        agent = fake_agent.to(hub.runtime, "n1", token)
        await agent.connect()

        ping = asyncio.create_task(api.post("/api/v1/nodes/n1/ping"))
        command = await agent.read_until("command")
        from proto import gamenode_pb2 as pb

        await agent.event(command_ack=pb.CommandAck(command_id=command.command.command_id, ok=True))
        assert (await ping).json()["node_id"] == "n1"
        while not (await api.get("/api/v1/nodes/n1")).json()["online"]:
            await asyncio.sleep(0.01)

        hub.stop()
        await asyncio.wait_for(task, WAIT)
        code, _ = await agent.ended()
        assert code == grpc.StatusCode.UNAVAILABLE
        await agent.dispose()

    assert (tmp_path / "data" / "nodes" / ".index.json").is_file()  # stores closed cleanly
    stores = Stores.open(tmp_path / "data")  # and the lock is free
    try:
        assert stores.nodes.get("n1").online  # a stopping hub leaves its nodes as they were
    finally:
        stores.close()


async def test_a_grpc_address_in_use_is_a_listen_error(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        hub = Hub(settings(tmp_path, grpc_listen=f"127.0.0.1:{port}"), freeze_gc=False)
        with pytest.raises(ListenError, match=f"cannot listen on 127.0.0.1:{port}: Address already in use"):
            await hub.run()
    Stores.open(tmp_path / "data").close()  # the data dir was released
