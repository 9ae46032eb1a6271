"""A hub's live side on 127.0.0.1:0 in the test's loop, and a fake agent that speaks the wire raw.

`hub` is a `HubRuntime` over fresh stores with a clock that moves only when
told (offline detection) and a monitor that never runs by itself (tests call
`registry.check_timeouts()`); its gRPC port is TLS (`hub.channel` pins its
CA) and agents stream on its mTLS port. `insecure_hub` is the same with
`insecure=True` (plaintext, agents prove their key in the Hello).

`FakeAgent` is a raw `AgentService` client: the first time it opens a stream
it joins for real (a new key from `agent.pki`, its join token and a CSR to
`Join` on the TLS port), then streams with its certificate (mTLS, or the
Hello's proof on an insecure hub). It sends what the test says and reads what
the hub answers. To know the hub has handled everything sent so far, `sync()`
sends a reliable event and waits for its ack (the hub handles a stream's
messages in order).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import httpx
import pytest
from grpc import aio

from agent.pki import PrivateKey, key_pem, load_key, make_csr, new_key, sign_proof
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


@dataclass(frozen=True)
class Identity:
    """A node's key and the client certificate the hub signed for it (PEM)."""

    key_pem: bytes
    cert_pem: bytes

    @property
    def key(self) -> PrivateKey:
        return load_key(self.key_pem)


@dataclass(frozen=True)
class HubEndpoint:
    """Where and how an agent reaches a hub."""

    address: str
    """The gRPC address (Endpoints, Join): TLS with the hub's CA, plaintext when `insecure`."""
    agent_address: str
    """Where agents stream: mTLS, or the gRPC address when `insecure`."""
    ca_pem: bytes
    insecure: bool = False

    @classmethod
    def of(cls, runtime: HubRuntime) -> HubEndpoint:
        assert runtime.ca is not None
        return cls(runtime.grpc_address, runtime.agent_address, runtime.ca.ca_pem, runtime.settings.insecure)

    def channel(self) -> aio.Channel:
        """A channel to the gRPC address (the CA pinned)."""
        if self.insecure:
            return aio.insecure_channel(self.address)
        return aio.secure_channel(self.address, grpc.ssl_channel_credentials(self.ca_pem))

    def agent_channel(self, identity: Identity) -> aio.Channel:
        """A channel to where agents stream, holding `identity` (mTLS; plaintext when `insecure`)."""
        if self.insecure:
            return aio.insecure_channel(self.agent_address)
        credentials = grpc.ssl_channel_credentials(self.ca_pem, identity.key_pem, identity.cert_pem)
        return aio.secure_channel(self.agent_address, credentials)


class FakeAgent:
    """One node's `AgentService` client: joins when it has no certificate, then one Connect stream at a time."""

    def __init__(self, endpoint: HubEndpoint, node_id: str, token: str = "", identity: Identity | None = None) -> None:
        self.endpoint = endpoint
        self.node_id = node_id
        self.token = token
        """The join token it joins with (when it has no identity)."""
        self.identity = identity
        self.seq = 0
        self.call: Any = None
        self._out: asyncio.Queue[pb.AgentMessage | None] = asyncio.Queue()
        self._channels: list[aio.Channel] = []
        self.commands: list[pb.HubMessage] = []
        self.acked = 0

    @classmethod
    def to(cls, runtime: HubRuntime, node_id: str, token: str = "", identity: Identity | None = None) -> FakeAgent:
        """An agent of the hub `runtime` serves."""
        return cls(HubEndpoint.of(runtime), node_id, token, identity)

    def _channel(self, channel: aio.Channel) -> aio.Channel:
        self._channels.append(channel)
        return channel

    async def endpoints(self) -> pb.EndpointsResponse:
        stub = pb_grpc.AgentServiceStub(self._channel(self.endpoint.channel()))
        return await stub.Endpoints(pb.EndpointsRequest(), timeout=WAIT)  # type: ignore[no-any-return]

    async def join(self, token: str | None = None, key: PrivateKey | None = None,
                   node_id: str | None = None) -> pb.JoinResponse:
        """`Join` with a CSR for `key` (default: a new one); the certificate becomes this agent's identity."""
        key = key or new_key()
        stub = pb_grpc.AgentServiceStub(self._channel(self.endpoint.channel()))
        request = pb.JoinRequest(node_id=node_id or self.node_id, token=self.token if token is None else token,
                                 csr_pem=make_csr(key, node_id or self.node_id))
        answer: pb.JoinResponse = await stub.Join(request, timeout=WAIT)
        self.identity = Identity(key_pem(key), answer.certificate_pem)
        return answer

    def hello(self, **fields: Any) -> pb.Hello:
        """This agent's Hello (fields may be overridden); on an insecure hub with its certificate and proof."""
        base: dict[str, Any] = {"node_id": self.node_id, "agent_version": "test", "first_unacked_seq": self.seq + 1}
        if self.endpoint.insecure and self.identity is not None:
            now_ms = int(time.time() * 1000)
            base |= {"certificate_pem": self.identity.cert_pem, "proof_time_ms": now_ms,
                     "proof": sign_proof(self.identity.key, fields.get("node_id", self.node_id), now_ms)}
        return pb.Hello(**(base | fields))

    async def _requests(self) -> AsyncIterator[pb.AgentMessage]:
        while (message := await self._out.get()) is not None:
            yield message

    async def connect(self, **hello: Any) -> pb.Welcome:
        """Open the stream, send Hello (fields may be overridden), return the Welcome."""
        await self.open()
        await self.send(hello=self.hello(**hello))
        first = await self.read()
        assert first.WhichOneof("body") == "welcome", first
        return first.welcome

    async def open(self) -> None:
        """Open the stream (joining first when this agent has no certificate) without sending anything."""
        if self.identity is None:
            await self.join()
        assert self.identity is not None
        self._out = asyncio.Queue()
        stub = pb_grpc.AgentServiceStub(self._channel(self.endpoint.agent_channel(self.identity)))
        self.call = stub.Connect(self._requests())

    async def dispose(self) -> None:
        if self.call is not None:
            self.call.cancel()
        for channel in self._channels:
            await channel.close()

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
    """To the gRPC address: TLS with the hub's CA pinned (plaintext on an insecure hub)."""
    make_agent: Callable[..., FakeAgent]
    endpoint: HubEndpoint

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

    def token(self, name: str, role: str = "admin") -> str:
        """A new API token named `name` (the actor its changes are recorded as)."""
        return self.services.api_tokens.create(name, role)[1]

    def bearer(self, name: str, role: str = "admin") -> tuple[tuple[str, str], ...]:
        """gRPC metadata carrying a new API token named `name`."""
        return (("authorization", f"Bearer {self.token(name, role)}"),)

    async def client(self, token: str | None = None) -> httpx.AsyncClient:
        """A REST client of the hub's app, with `token` (default: the hub's `DATA_DIR/admin.token`)."""
        app = self.runtime.app()  # writes admin.token on first use
        token = token or admin_token(self.runtime.settings.data_dir)
        return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t",
                                 headers={"Authorization": f"Bearer {token}"})


def hub_settings(data_dir: Path, **overrides: Any) -> HubSettings:
    return HubSettings(data_dir=data_dir, http_listen="127.0.0.1:0", grpc_listen="127.0.0.1:0", **overrides)


@pytest.fixture
def stores(tmp_path: Path) -> Iterator[Stores]:
    stores = Stores.open(tmp_path / "data")
    yield stores
    stores.close()


@contextlib.asynccontextmanager
async def running_hub(data_dir: Path, stores: Stores, **settings: Any) -> AsyncIterator[Hub]:
    """A started HubRuntime over `stores` (settings overridden by `settings`), stopped at the end."""
    services = Services.over(stores)
    clock = FakeClock()
    runtime = HubRuntime(services, hub_settings(data_dir, **settings), clock=clock)
    await runtime.start("127.0.0.1:0", monitor_period=3600)
    endpoint = HubEndpoint.of(runtime)
    channel = endpoint.channel()
    agents: list[FakeAgent] = []

    def make_agent(node_id: str = "n1", token: str | None = None, create: bool = True,
                   identity: Identity | None = None, **fields: Any) -> FakeAgent:
        """A node (created unless `create=False`), a join token for it (unless given, or an `identity` is:
        then the agent streams as that certificate), and an agent holding them."""
        if create and node_id not in stores.nodes:
            services.nodes.create_node({"id": node_id, "name": node_id, "type": "physical", **fields})
        if token is None and identity is None:
            token = services.credentials.issue(node_id)
        agent = FakeAgent(endpoint, node_id, token or "", identity)
        agents.append(agent)
        return agent

    try:
        yield Hub(runtime, services, stores, clock, channel, make_agent, endpoint)
    finally:
        for agent in agents:
            await agent.dispose()
        await runtime.stop(grace=0)
        await channel.close()


@pytest.fixture
async def hub(tmp_path: Path, stores: Stores) -> AsyncIterator[Hub]:
    async with running_hub(tmp_path / "data", stores) as hub:
        yield hub


@pytest.fixture
async def insecure_hub(tmp_path: Path, stores: Stores) -> AsyncIterator[Hub]:
    """A hub with `insecure=True`: plaintext, agents stream on the gRPC port with a proof in their Hello."""
    async with running_hub(tmp_path / "data", stores, insecure=True) as hub:
        yield hub


def admin_token(data_dir: Path) -> str:
    """The local admin API token the hub wrote at start."""
    return (data_dir / "admin.token").read_text().strip()


class AuthedStub:
    """A `HubServiceStub` whose calls carry `authorization: Bearer TOKEN` unless they bring their own."""

    def __init__(self, stub: pb_grpc.HubServiceStub, token: str) -> None:
        self._stub = stub
        self._token = token

    def __getattr__(self, name: str) -> Callable[..., Any]:
        method = getattr(self._stub, name)

        def call(request: Any, *args: Any, metadata: Any = (), **kwargs: Any) -> Any:
            metadata = tuple(metadata or ())
            if not any(key == "authorization" for key, _ in metadata):
                metadata = (("authorization", f"Bearer {self._token}"), *metadata)
            return method(request, *args, metadata=metadata, **kwargs)

        return call


@pytest.fixture
async def hub_stub(hub: Hub) -> pb_grpc.HubServiceStub:
    """HubService over the hub's TCP port, as the local admin (`DATA_DIR/admin.token`)."""
    stub = AuthedStub(pb_grpc.HubServiceStub(hub.channel), admin_token(hub.runtime.settings.data_dir))
    return stub  # type: ignore[return-value]  # duck-typed: every call of the stub


@pytest.fixture
def fake_agent() -> type[FakeAgent]:
    """The FakeAgent class, for tests that run a hub of their own."""
    return FakeAgent


@pytest.fixture
def identity() -> type[Identity]:
    """The Identity class: a key and certificate a test made itself."""
    return Identity
