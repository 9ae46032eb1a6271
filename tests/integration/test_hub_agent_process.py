"""The hub process with a raw agent: join token over REST, Endpoints and Join on the TLS port, an mTLS stream
on the agent port (Hello, online, ping), SIGTERM."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import grpc
import httpx
import pytest
from grpc import aio

from agent import pki
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


def _admin(hub: HubProcess) -> dict[str, str]:
    """The REST headers of the hub's local admin (`DATA_DIR/admin.token`)."""
    return {"Authorization": f"Bearer {(hub.data_dir / 'admin.token').read_text().strip()}"}


async def _join(channel: aio.Channel, node_id: str, token: str) -> tuple[bytes, bytes, pb.JoinResponse]:
    """Join as `node_id`: (key PEM, certificate PEM, the answer)."""
    key = pki.new_key()
    answer: pb.JoinResponse = await pb_grpc.AgentServiceStub(channel).Join(
        pb.JoinRequest(node_id=node_id, token=token, csr_pem=pki.make_csr(key, node_id)), timeout=WAIT)
    return pki.key_pem(key), answer.certificate_pem, answer


async def test_an_agent_joins_connects_over_mtls_is_pinged_and_the_hub_stops_cleanly(
    start_hub: Callable[[Path], HubProcess], tmp_path: Path
) -> None:
    hub = start_hub(tmp_path / "data")
    ca = (hub.data_dir / "ca.pem").read_bytes()
    async with httpx.AsyncClient(base_url=hub.url, timeout=WAIT, headers=_admin(hub)) as api, \
            aio.secure_channel(hub.grpc_address, grpc.ssl_channel_credentials(ca)) as main:
        r = await api.post("/api/v1/nodes", json={"id": "agent-1", "name": "agent-1", "type": "physical"})
        assert r.status_code == 201, r.text
        token = (await api.post("/api/v1/nodes/agent-1/token")).json()["token"]

        endpoints = await pb_grpc.AgentServiceStub(main).Endpoints(pb.EndpointsRequest(), timeout=WAIT)
        assert endpoints.mtls and endpoints.agent_port not in (0, int(hub.grpc_address.rsplit(":", 1)[1]))
        with pytest.raises(aio.AioRpcError) as refused:
            await _join(main, "agent-1", token.partition(".")[0] + ".wrong")
        assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED
        key_pem, cert_pem, joined = await _join(main, "agent-1", token)
        assert joined.ca_pem.startswith(ca.strip()) and joined.agent_port == endpoints.agent_port
        assert pki.cert_node_id(pki.load_cert(cert_pem)) == "agent-1"
        with pytest.raises(aio.AioRpcError) as used:  # single use (and the node is enrolled with another key now)
            await _join(main, "agent-1", token)
        assert used.value.code() in (grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.PERMISSION_DENIED)

        stream_at = f"127.0.0.1:{endpoints.agent_port}"
        async with aio.secure_channel(stream_at, grpc.ssl_channel_credentials(ca, key_pem, cert_pem)) as channel:
            impostor = Agent(channel)  # the certificate is agent-1's: it cannot stream as another node
            await impostor.out.put(pb.AgentMessage(hello=pb.Hello(node_id="agent-2")))
            with pytest.raises(aio.AioRpcError):
                await impostor.read()
            assert await impostor.call.code() == grpc.StatusCode.UNAUTHENTICATED

            agent = Agent(channel)
            await agent.out.put(pb.AgentMessage(hello=pb.Hello(node_id="agent-1", first_unacked_seq=1)))
            welcome = (await agent.read()).welcome
            assert welcome.session_id and welcome.heartbeat_interval_ms == 5000

            async def online() -> bool:
                node = (await api.get("/api/v1/nodes/agent-1")).json()
                return bool(node["online"]) and node["status"] == "online"

            await wait_until(online)
            await agent.out.put(pb.AgentMessage(metrics=pb.MetricsBatch(
                samples=[pb.MetricsSample(cpu_percent=5.0)])))

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


async def test_the_agent_port_refuses_a_client_without_a_certificate(
    start_hub: Callable[[Path], HubProcess], tmp_path: Path
) -> None:
    hub = start_hub(tmp_path / "data")
    ca = (hub.data_dir / "ca.pem").read_bytes()
    async with aio.secure_channel(hub.grpc_address, grpc.ssl_channel_credentials(ca)) as main:
        endpoints = await pb_grpc.AgentServiceStub(main).Endpoints(pb.EndpointsRequest(), timeout=WAIT)
    async with aio.secure_channel(f"127.0.0.1:{endpoints.agent_port}", grpc.ssl_channel_credentials(ca)) as channel:
        agent = Agent(channel)
        await agent.out.put(pb.AgentMessage(hello=pb.Hello(node_id="agent-1")))
        with pytest.raises(aio.AioRpcError):
            await agent.read()
        assert await agent.call.code() == grpc.StatusCode.UNAVAILABLE  # the TLS handshake wants a certificate
    async with aio.insecure_channel(hub.grpc_address) as plaintext:
        with pytest.raises(aio.AioRpcError) as caught:
            await pb_grpc.AgentServiceStub(plaintext).Endpoints(pb.EndpointsRequest(), timeout=WAIT)
        assert caught.value.code() == grpc.StatusCode.UNAVAILABLE  # the main port is TLS
