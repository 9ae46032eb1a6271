"""A hub's live side on 127.0.0.1:0 in the test's loop, and a fake agent that speaks the wire raw.

`hub` is a `HubRuntime` over fresh stores with a clock that moves only when
told (offline detection) and a monitor that never runs by itself (tests call
`registry.check_timeouts()`). `FakeAgent` is a raw `AgentService` stub: it
sends what the test says and reads what the hub answers. To know the hub has
handled everything sent so far, `sync()` sends a reliable event and waits for
its ack (the hub handles a stream's messages in order).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import httpx
import pytest
from grpc import aio

from console.hub.runtime import HubRuntime
from console.models import GameNode
from console.service import Services
from console.settings import HubSettings
from console.store import Stores
from proto import gamenode_pb2 as pb
from proto import gamenode_pb2_grpc as pb_grpc

WAIT = 10.0
"""Seconds a test waits for something the hub will do (a bound, never a measurement)."""


class FakeClock:
    """Monotonic seconds that move only when told."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class FakeAgent:
    """One `AgentService.Connect` stream, driven by the test."""

    def __init__(self, channel: aio.Channel, node_id: str, token: str) -> None:
        self.stub = pb_grpc.AgentServiceStub(channel)
        self.node_id = node_id
        self.token = token
        self.seq = 0
        self.call: Any = None
        self._out: asyncio.Queue[pb.AgentMessage | None] = asyncio.Queue()
        self.commands: list[pb.HubMessage] = []
        self.acked = 0

    async def _requests(self) -> AsyncIterator[pb.AgentMessage]:
        while (message := await self._out.get()) is not None:
            yield message

    async def connect(self, **hello: Any) -> pb.Welcome:
        """Open the stream, send Hello (fields may be overridden), return the Welcome."""
        self._out = asyncio.Queue()
        self.call = self.stub.Connect(self._requests())
        fields = {"node_id": self.node_id, "credential": self.token, "agent_version": "test",
                  "first_unacked_seq": self.seq + 1, **hello}
        await self.send(hello=pb.Hello(**fields))
        first = await self.read()
        assert first.WhichOneof("body") == "welcome", first
        return first.welcome

    def open(self) -> None:
        """Open the stream without sending anything."""
        self._out = asyncio.Queue()
        self.call = self.stub.Connect(self._requests())

    async def send(self, seq: int = 0, **body: Any) -> None:
        await self._out.put(pb.AgentMessage(seq=seq, **body))

    async def event(self, **body: Any) -> int:
        """Send a reliable event with the next seq; its seq."""
        self.seq += 1
        await self.send(self.seq, **body)
        return self.seq

    async def read(self) -> pb.HubMessage:
        message = await asyncio.wait_for(self.call.read(), WAIT)
        assert message is not aio.EOF, "the hub ended the stream"
        return message  # type: ignore[no-any-return]

    async def read_until(self, kind: str) -> pb.HubMessage:
        """Messages up to the first of `kind`; commands on the way are kept, acks counted."""
        while True:
            message = await self.read()
            got = message.WhichOneof("body")
            if got == "command":
                self.commands.append(message)
            elif got == "ack":
                self.acked = max(self.acked, message.ack.up_to_seq)
            if got == kind:
                return message

    async def sync(self) -> None:
        """Wait until the hub has handled everything sent so far."""
        seq = await self.event(log_chunk=pb.LogChunk(source="agent", lines=[pb.LogLine(text="sync")]))
        while self.acked < seq:
            await self.read_until("ack")

    async def heartbeat(self, instances: int = 0) -> None:
        await self.send(heartbeat=pb.Heartbeat(instances=instances, runtime="available"))

    async def close(self) -> None:
        """End the stream from the agent's side (half-close)."""
        await self._out.put(None)

    async def ended(self) -> tuple[grpc.StatusCode, str]:
        """Read to the end of the stream; (status code, details)."""
        async def drain() -> None:
            while (message := await self.call.read()) is not aio.EOF:
                if message.WhichOneof("body") == "command":
                    self.commands.append(message)

        try:
            await asyncio.wait_for(drain(), WAIT)
        except aio.AioRpcError:
            pass
        return await self.call.code(), await self.call.details()


@dataclass
class Hub:
    runtime: HubRuntime
    services: Services
    stores: Stores
    clock: FakeClock
    channel: aio.Channel
    make_agent: Callable[..., FakeAgent]

    @property
    def registry(self) -> Any:
        return self.runtime.registry

    def node(self, node_id: str) -> GameNode:
        """The node as stored (no live overlay)."""
        return self.stores.nodes.get(node_id)

    async def settle(self) -> None:
        """Let callbacks queued from other threads run, and the writer finish what is queued."""
        await asyncio.sleep(0)
        await self.runtime.registry.drain()
        await asyncio.sleep(0)

    async def client(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(transport=httpx.ASGITransport(app=self.runtime.app()), base_url="http://t")


def hub_settings(data_dir: Path, **overrides: Any) -> HubSettings:
    return HubSettings(data_dir=data_dir, http_listen="127.0.0.1:0", grpc_listen="127.0.0.1:0", **overrides)


@pytest.fixture
def stores(tmp_path: Path) -> Iterator[Stores]:
    stores = Stores.open(tmp_path / "data")
    yield stores
    stores.close()


@pytest.fixture
async def hub(tmp_path: Path, stores: Stores) -> AsyncIterator[Hub]:
    services = Services.over(stores)
    clock = FakeClock()
    runtime = HubRuntime(services, hub_settings(tmp_path / "data"), clock=clock)
    await runtime.start("127.0.0.1:0", monitor_period=3600)
    channel = aio.insecure_channel(runtime.grpc_address)
    agents: list[FakeAgent] = []

    def make_agent(node_id: str = "n1", token: str | None = None, create: bool = True, **fields: Any) -> FakeAgent:
        """A node (created unless `create=False`), a credential for it, and an agent holding it."""
        if create and node_id not in stores.nodes:
            services.nodes.create_node({"id": node_id, "name": node_id, "type": "physical", **fields})
        if token is None:
            token = services.credentials.issue(node_id)
        agent = FakeAgent(channel, node_id, token)
        agents.append(agent)
        return agent

    yield Hub(runtime, services, stores, clock, channel, make_agent)
    for agent in agents:
        if agent.call is not None:
            agent.call.cancel()
    await runtime.stop(grace=0)
    await channel.close()


@pytest.fixture
async def hub_stub(hub: Hub) -> pb_grpc.HubServiceStub:
    return pb_grpc.HubServiceStub(hub.channel)


@pytest.fixture
def fake_agent() -> type[FakeAgent]:
    """The FakeAgent class, for tests that run a hub of their own."""
    return FakeAgent
