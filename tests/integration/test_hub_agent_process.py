"""The hub process with a raw agent stream: credential over REST, Hello, online, ping, SIGTERM."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import grpc
import httpx
from grpc import aio

from proto import gamenode_pb2 as pb
from proto import gamenode_pb2_grpc as pb_grpc

if TYPE_CHECKING:
    from conftest import HubProcess

WAIT = 20.0


class Agent:
    """A raw AgentService stream."""

    def __init__(self, channel: aio.Channel) -> None:
        self.out: asyncio.Queue[pb.AgentMessage | None] = asyncio.Queue()
        self.call: Any = pb_grpc.AgentServiceStub(channel).Connect(self._requests())

    async def _requests(self) -> AsyncIterator[pb.AgentMessage]:
        while (message := await self.out.get()) is not None:
            yield message

    async def read(self) -> pb.HubMessage:
        message: pb.HubMessage = await asyncio.wait_for(self.call.read(), WAIT)
        return message


async def wait_until(check: Callable[[], Any]) -> None:
    async def poll() -> None:
        while not await check():
            await asyncio.sleep(0.05)

    await asyncio.wait_for(poll(), WAIT)


async def test_an_agent_connects_is_pinged_and_the_hub_stops_cleanly(
    start_hub: Callable[[Path], HubProcess], tmp_path: Path
) -> None:
    hub = start_hub(tmp_path / "data")
    async with httpx.AsyncClient(base_url=hub.url, timeout=WAIT) as api, \
            aio.insecure_channel(hub.grpc_address) as channel:
        r = await api.post("/api/v1/nodes", json={"id": "agent-1", "name": "agent-1", "type": "physical"})
        assert r.status_code == 201, r.text
        token = (await api.post("/api/v1/nodes/agent-1/token")).json()["token"]

        refused = Agent(channel)
        await refused.out.put(pb.AgentMessage(hello=pb.Hello(node_id="agent-1", credential="wrong")))
        try:
            await refused.read()
        except aio.AioRpcError as exc:
            assert exc.code() == grpc.StatusCode.UNAUTHENTICATED
        assert await refused.call.code() == grpc.StatusCode.UNAUTHENTICATED

        agent = Agent(channel)
        await agent.out.put(pb.AgentMessage(hello=pb.Hello(node_id="agent-1", credential=token,
                                                           first_unacked_seq=1)))
        welcome = (await agent.read()).welcome
        assert welcome.session_id and welcome.heartbeat_interval_ms == 5000

        async def online() -> bool:
            node = (await api.get("/api/v1/nodes/agent-1")).json()
            return bool(node["online"]) and node["status"] == "online"

        await wait_until(online)
        await agent.out.put(pb.AgentMessage(metrics=pb.MetricsBatch(samples=[pb.MetricsSample(cpu_percent=5.0)])))

        ping = asyncio.create_task(api.post("/api/v1/nodes/agent-1/ping"))
        command = await agent.read()
        assert command.command.HasField("ping")
        await agent.out.put(pb.AgentMessage(seq=1, command_ack=pb.CommandAck(
            command_id=command.command.command_id, ok=True)))
        assert (await agent.read()).ack.up_to_seq == 1
        answer = await ping
        assert answer.status_code == 200, answer.text
        assert answer.json()["node_id"] == "agent-1"
        samples = (await api.get("/api/v1/nodes/agent-1/metrics")).json()["samples"]
        assert [s["cpu_percent"] for s in samples] == [5.0]

        stopping = asyncio.create_task(asyncio.to_thread(hub.stop))
        try:
            while (await agent.read()) is not aio.EOF:
                pass
        except aio.AioRpcError:
            pass
        assert await agent.call.code() == grpc.StatusCode.UNAVAILABLE
        assert await stopping == 0, hub.stderr()
