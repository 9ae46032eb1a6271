"""Node identity over real gRPC: Endpoints, Join with a join token, mTLS streams, renewal, revocation,
the --insecure hub's Hello proof, and the CA files a hub start leaves."""

from __future__ import annotations

import json
import logging
import stat
from pathlib import Path
from typing import TYPE_CHECKING, Any

import grpc
import pytest
from grpc import aio

from agent.pki import cert_node_id, cert_pem, key_pem, load_cert, make_csr, new_key, serial_hex, sign_proof
from console.hub.runtime import HubRuntime
from console.service import Services
from console.service.ca import HubCA
from console.settings import HubSettings
from console.store import Stores
from proto import gamenode_pb2 as pb
from proto import gamenode_pb2_grpc as pb_grpc

if TYPE_CHECKING:
    from conftest import FakeAgent, Hub, Identity

WAIT = 10.0


async def refused(call: Any) -> tuple[grpc.StatusCode, str]:
    with pytest.raises(aio.AioRpcError) as exc:
        await call
    return exc.value.code(), exc.value.details() or ""


async def hello_refused(agent: FakeAgent, **hello: Any) -> tuple[grpc.StatusCode, str]:
    """Open a stream, send the agent's Hello (fields overridden), and read how it ends."""
    await agent.open()
    await agent.send(hello=agent.hello(**hello))
    return await agent.ended()


# --- Endpoints and Join ---------------------------------------------------------------------


async def test_endpoints_names_the_mtls_port(hub: Hub) -> None:
    answer = await hub.make_agent("n1").endpoints()
    assert answer.mtls and answer.agent_port == int(hub.runtime.agent_address.rsplit(":", 1)[1])
    assert answer.agent_port != int(hub.runtime.grpc_address.rsplit(":", 1)[1]) and answer.hub_version


async def test_join_signs_the_csr_for_the_node_and_uses_the_token_up(hub: Hub) -> None:
    agent = hub.make_agent("n1")
    key = new_key()
    answer = await agent.join(key=key)
    cert = load_cert(answer.certificate_pem)
    assert cert_node_id(cert) == "n1" and cert.public_key() == key.public_key()
    assert hub.runtime.ca is not None and answer.ca_pem == hub.runtime.ca.ca_pem
    assert answer.mtls and answer.agent_port == int(hub.runtime.agent_address.rsplit(":", 1)[1])
    record = hub.stores.credentials.get("n1")
    assert record.certificate is not None and record.certificate.serial == serial_hex(cert)

    again = await agent.join(key=key)  # a retried Join with the same key: a certificate again
    assert load_cert(again.certificate_pem).public_key() == key.public_key()
    code, details = await refused(agent.join())  # the used token with another key
    assert code == grpc.StatusCode.PERMISSION_DENIED
    assert details == "node n1 is enrolled with another key; issue a new join token to re-enroll it"

    agent.token = hub.services.credentials.issue("n1")  # re-issued: any key may join once more
    await agent.join()
    await agent.connect()
    assert hub.registry.connected("n1")


async def test_an_expired_join_token_is_refused(hub: Hub) -> None:
    agent = hub.make_agent("n1")
    record = hub.stores.credentials.get("n1")
    assert record.join_token is not None
    hub.services.credentials.clock = lambda: record.join_token.expires_at  # type: ignore[union-attr]
    code, details = await refused(agent.join())
    assert (code, details) == (grpc.StatusCode.UNAUTHENTICATED, "invalid or expired join token for node n1")


async def test_a_bad_csr_is_invalid_argument(hub: Hub) -> None:
    agent = hub.make_agent("n1")
    stub = pb_grpc.AgentServiceStub(hub.channel)
    code, details = await refused(stub.Join(pb.JoinRequest(node_id="n1", token=agent.token, csr_pem=b"x")))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and details.startswith("csr_pem: ")


async def test_joins_are_audited_and_logged_without_the_token(hub: Hub, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    agent = hub.make_agent("n1")
    await agent.join()
    await refused(agent.join())
    entries = [json.loads(line) for line in (hub.runtime.settings.data_dir / "audit.log").read_text().splitlines()]
    joins = [(e["actor"], e["action"], e["target"], e["status"]) for e in entries if "Join" in e["action"]]
    assert joins == [("node:n1", "AgentService.Join", {"kind": "node", "id": "n1"}, "OK"),
                     ("node:n1", "AgentService.Join", {"kind": "node", "id": "n1"}, "PERMISSION_DENIED")]
    secret = agent.token.split(".")[1]
    assert secret not in caplog.text and secret not in (hub.runtime.settings.data_dir / "audit.log").read_text()


# --- the stream's certificate ---------------------------------------------------------------


async def test_a_certificate_for_another_node_is_refused(hub: Hub, caplog: pytest.LogCaptureFixture) -> None:
    n1 = hub.make_agent("n1")
    await n1.join()
    await hub.make_agent("n2").join()
    caplog.set_level(logging.WARNING)
    code, details = await hello_refused(n1, node_id="n2")
    assert (code, details) == (grpc.StatusCode.UNAUTHENTICATED, "the certificate is node n1's, not node n2's")
    assert not hub.registry.connected("n2")
    assert "refused agent stream for node 'n2' from ipv4:127.0.0.1" in caplog.text


async def test_a_certificate_of_another_ca_fails_the_handshake(
    hub: Hub, tmp_path: Path, identity: type[Identity]
) -> None:
    (tmp_path / "other").mkdir()
    stranger = HubCA.load_or_create(tmp_path / "other")
    key = new_key()
    forged = identity(key_pem(key), cert_pem(stranger.sign_node(make_csr(key, "n1"), "n1")))
    hub.services.nodes.create_node({"id": "n1", "name": "n1", "type": "physical"})
    agent = hub.make_agent("n1", identity=forged, create=False)
    code, _ = await hello_refused(agent)
    assert code == grpc.StatusCode.UNAVAILABLE  # no TLS session: the hub never saw a Hello
    assert not hub.registry.connected("n1")


async def test_the_main_port_wants_a_certificate_for_streams(hub: Hub) -> None:
    agent = hub.make_agent("n1")
    await agent.join()
    stub = pb_grpc.AgentServiceStub(hub.channel)  # TLS, but no client certificate
    call = stub.Connect(iter([pb.AgentMessage(hello=agent.hello())]))
    code, details = await refused(call.read())
    assert code == grpc.StatusCode.UNAUTHENTICATED
    assert details.startswith("node n1: no client certificate; agents stream on the hub's agent port with mTLS")


async def test_plaintext_clients_are_refused_on_both_ports(hub: Hub) -> None:
    for address in (hub.runtime.agent_address, hub.runtime.grpc_address):
        async with aio.insecure_channel(address) as channel:
            code, _ = await refused(pb_grpc.AgentServiceStub(channel).Endpoints(pb.EndpointsRequest(), timeout=WAIT))
        assert code == grpc.StatusCode.UNAVAILABLE


async def test_the_mtls_port_wants_a_client_certificate(hub: Hub) -> None:
    assert hub.runtime.ca is not None
    credentials = grpc.ssl_channel_credentials(hub.runtime.ca.ca_pem)  # TLS without a client certificate
    async with aio.secure_channel(hub.runtime.agent_address, credentials) as channel:
        code, _ = await refused(pb_grpc.AgentServiceStub(channel).Endpoints(pb.EndpointsRequest(), timeout=WAIT))
    assert code == grpc.StatusCode.UNAVAILABLE


@pytest.mark.parametrize("how", ["DELETE /token", "POST /token"])
async def test_revoking_closes_the_live_stream_at_once(hub: Hub, how: str) -> None:
    agent = hub.make_agent("n1")
    await agent.connect()
    method, _ = how.split()
    async with await hub.client() as client:
        answer = await client.request(method, "/api/v1/nodes/n1/token")
    assert answer.is_success, answer.text
    code, details = await agent.ended()
    what = "revoked" if method == "DELETE" else "rotated"
    assert (code, details) == (grpc.StatusCode.UNAUTHENTICATED, f"the credential for node n1 was {what}")
    code, _ = await hello_refused(agent)  # and its certificate no longer opens a stream
    assert code == grpc.StatusCode.UNAUTHENTICATED


# --- renewal --------------------------------------------------------------------------------


async def test_renewal_answers_a_certificate_and_the_old_one_works_until_the_new_one_is_used(
    hub: Hub, identity: type[Identity]
) -> None:
    agent = hub.make_agent("n1")
    await agent.connect()
    old = agent.identity
    assert old is not None
    key = new_key()
    await agent.send(renew=pb.RenewCertificate(csr_pem=make_csr(key, "n1")))
    answer = await agent.read_until("certificate")
    cert = load_cert(answer.certificate.certificate_pem)
    assert cert_node_id(cert) == "n1" and cert.public_key() == key.public_key()
    assert serial_hex(cert) != serial_hex(load_cert(old.cert_pem))
    await agent.sync()  # the stream goes on

    with_old = hub.make_agent("n1", identity=old, create=False)
    await with_old.connect()  # still accepted (and replaces the first stream)
    await agent.ended()
    renewed = hub.make_agent("n1", identity=identity(key_pem(key), answer.certificate.certificate_pem),
                             create=False)
    await renewed.connect()
    code, _ = await with_old.ended()
    assert code == grpc.StatusCode.ABORTED  # replaced, not refused
    await hub.settle()
    assert hub.stores.credentials.get("n1").previous is None
    code, details = await hello_refused(hub.make_agent("n1", identity=old, create=False))
    assert code == grpc.StatusCode.UNAUTHENTICATED and "revoked or replaced" in details
    await renewed.sync()
    assert hub.registry.get("n1") is not None


async def test_a_bad_renewal_csr_ends_the_stream_naming_the_field(hub: Hub) -> None:
    agent = hub.make_agent("n1")
    await agent.connect()
    await agent.send(renew=pb.RenewCertificate(csr_pem=b"junk"))
    code, details = await agent.ended()
    assert code == grpc.StatusCode.INVALID_ARGUMENT and details.startswith("renew.csr_pem: ")


# --- an --insecure hub ----------------------------------------------------------------------


async def test_insecure_hub_streams_on_its_grpc_port_with_a_proof(insecure_hub: Hub) -> None:
    hub = insecure_hub
    assert hub.runtime.agent_address == hub.runtime.grpc_address and hub.runtime.agent_server is None
    agent = hub.make_agent("n1")
    answer = await agent.endpoints()
    assert (answer.agent_port, answer.mtls) == (0, False)
    joined = await agent.join()
    assert (joined.agent_port, joined.mtls) == (0, False)
    await agent.connect()
    await agent.sync()
    assert hub.registry.connected("n1")


@pytest.mark.parametrize("case", ["no proof", "proof by another key", "proof for another node", "old proof",
                                  "token only", "certificate of another node"])
async def test_insecure_hub_refuses_a_hello_without_a_good_proof(insecure_hub: Hub, case: str) -> None:
    hub = insecure_hub
    agent = hub.make_agent("n1")
    await agent.join()
    assert agent.identity is not None
    fields: dict[str, Any] = {}
    proof = agent.hello()
    if case == "no proof":
        fields = {"proof": b""}
    elif case == "proof by another key":
        fields = {"proof": sign_proof(new_key(), "n1", proof.proof_time_ms)}
    elif case == "proof for another node":
        fields = {"proof": sign_proof(agent.identity.key, "n2", proof.proof_time_ms)}
    elif case == "old proof":
        old = proof.proof_time_ms - 3_600_000
        fields = {"proof_time_ms": old, "proof": sign_proof(agent.identity.key, "n1", old)}
    elif case == "token only":
        fields = {"certificate_pem": b"", "proof": b"", "credential": agent.token}
    else:
        other = hub.make_agent("n2")
        await other.join()
        assert other.identity is not None
        fields = {"certificate_pem": other.identity.cert_pem,
                  "proof": sign_proof(other.identity.key, "n1", proof.proof_time_ms)}
    code, details = await hello_refused(agent, **fields)
    assert code == grpc.StatusCode.UNAUTHENTICATED and "n1" in details, details
    assert not hub.registry.connected("n1")


# --- the CA's files -------------------------------------------------------------------------


def hub_settings(data_dir: Path) -> HubSettings:
    return HubSettings(data_dir=data_dir, http_listen="127.0.0.1:0", grpc_listen="127.0.0.1:0")


async def test_a_hub_start_writes_its_ca_and_a_restart_reuses_it(tmp_path: Path, stores: Stores) -> None:
    data = tmp_path / "data"
    names = ("ca.pem", "ca-key.pem", "hub.pem", "hub-key.pem")

    async def start_and_stop() -> dict[str, bytes]:
        runtime = HubRuntime(Services.over(stores), hub_settings(data))
        await runtime.start("127.0.0.1:0", monitor_period=3600)
        await runtime.stop(grace=0)
        return {name: (data / name).read_bytes() for name in names}

    first = await start_and_stop()
    assert stat.S_IMODE((data / "ca-key.pem").stat().st_mode) == 0o600
    assert stat.S_IMODE((data / "hub-key.pem").stat().st_mode) == 0o600
    assert b"PRIVATE KEY" in first["ca-key.pem"] and b"CERTIFICATE" in first["ca.pem"]
    assert await start_and_stop() == first


async def test_the_agent_port_defaults_to_the_grpc_port_plus_one(tmp_path: Path, stores: Stores) -> None:
    runtime = HubRuntime(Services.over(stores), hub_settings(tmp_path / "data"))
    assert runtime._agent_listen([("127.0.0.1", 7070)]) == "127.0.0.1:7071"
    assert runtime._agent_listen([("::1", 0)]) == "[::1]:0"
    assert runtime._agent_listen([]) is None
    assert runtime._ca_hosts([("0.0.0.0", 7070)], ("10.1.2.3", 7071)) == ("10.1.2.3",)
