"""HubService auth on a real hub runtime: TLS TCP port with tokens, the unix socket as admin, the role table."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import pytest
from grpc import aio

from console.hub.grpc_auth import AUDITED, RPC_ROLES
from console.hub.runtime import HubRuntime
from console.models import Role
from console.service import Services
from console.settings import HubSettings
from console.store import Stores
from proto import gamenode_pb2 as pb

SERVICE = pb.DESCRIPTOR.services_by_name["HubService"]
WAIT = 10.0


@dataclass
class Served:
    runtime: HubRuntime
    services: Services
    tls: aio.Channel
    """The TCP port (TLS, the hub's CA pinned)."""
    unix: aio.Channel

    def token(self, name: str, role: Role) -> tuple[tuple[str, str], ...]:
        return (("authorization", f"Bearer {self.services.api_tokens.create(name, role)[1]}"),)


@pytest.fixture
def services(tmp_path: Path) -> Iterator[Services]:
    stores = Stores.open(tmp_path / "data")
    yield Services.over(stores)
    stores.close()


@pytest.fixture
async def served(tmp_path: Path, services: Services) -> AsyncIterator[Served]:
    settings = HubSettings(data_dir=tmp_path / "data", http_listen="127.0.0.1:0", grpc_listen="127.0.0.1:0")
    runtime = HubRuntime(services, settings)
    await runtime.start(f"127.0.0.1:0,unix:{tmp_path / 'hub.sock'}", monitor_period=3600)
    assert runtime.ca is not None
    tls = aio.secure_channel(runtime.grpc_address, grpc.ssl_channel_credentials(runtime.ca.ca_pem))
    unix = aio.insecure_channel(f"unix:{tmp_path / 'hub.sock'}")
    yield Served(runtime, services, tls, unix)
    await tls.close()
    await unix.close()
    await runtime.stop(grace=0)


async def call(channel: aio.Channel, name: str, request: Any = None, metadata: Any = ()) -> Any:
    """Call any HubService RPC by name (a stream: its first message)."""
    method = SERVICE.methods_by_name[name]
    request = request if request is not None else getattr(pb, method.input_type.name)()
    path = f"/{SERVICE.full_name}/{name}"
    decode = getattr(pb, method.output_type.name).FromString
    if method.server_streaming:
        stream = channel.unary_stream(path, request_serializer=type(request).SerializeToString,
                                      response_deserializer=decode)(request, metadata=metadata, timeout=WAIT)
        try:
            async for message in stream:
                return message
        finally:
            stream.cancel()
        return None
    unary = channel.unary_unary(path, request_serializer=type(request).SerializeToString,
                                response_deserializer=decode)
    return await unary(request, metadata=metadata, timeout=WAIT)


async def code_of(coro: Any) -> tuple[grpc.StatusCode, str]:
    with pytest.raises(aio.AioRpcError) as exc:
        await coro
    return exc.value.code(), exc.value.details() or ""


# --- the table ------------------------------------------------------------------------------------


def test_the_role_table_covers_every_rpc_of_the_service_exactly() -> None:
    assert set(RPC_ROLES) == {m.name for m in SERVICE.methods}


def test_every_rpc_that_changes_something_is_audited_by_a_field_it_has() -> None:
    reads_needing_more = {"GetHostKey"}  # admin: it makes the hub dial the node's sshd, but changes nothing
    assert set(AUDITED) == {name for name, role in RPC_ROLES.items() if role > Role.VIEWER} - reads_needing_more
    for name, (_, field) in AUDITED.items():
        request = getattr(pb, SERVICE.methods_by_name[name].input_type.name)
        assert field is None or field in request.DESCRIPTOR.fields_by_name, (name, field)


# --- over TCP -------------------------------------------------------------------------------------


async def test_every_rpc_refuses_an_anonymous_caller(served: Served) -> None:
    for method in SERVICE.methods:
        code, details = await code_of(call(served.tls, method.name))
        assert code == grpc.StatusCode.UNAUTHENTICATED, method.name
        assert "no API token" in details


async def test_a_bad_or_revoked_token_is_unauthenticated(served: Served) -> None:
    record, token = served.services.api_tokens.create("x", Role.ADMIN)
    for header in (f"Bearer {token}x", token, "Bearer nope.nope"):
        code, _ = await code_of(call(served.tls, "GetVersion", metadata=(("authorization", header),)))
        assert code == grpc.StatusCode.UNAUTHENTICATED, header
    assert await call(served.tls, "GetVersion", metadata=(("authorization", f"Bearer {token}"),))
    served.services.api_tokens.revoke(record.id)
    code, _ = await code_of(call(served.tls, "GetVersion", metadata=(("authorization", f"Bearer {token}"),)))
    assert code == grpc.StatusCode.UNAUTHENTICATED


async def test_a_viewer_may_read_but_not_start_a_run(served: Served) -> None:
    viewer = served.token("val", Role.VIEWER)
    assert (await call(served.tls, "GetVersion", metadata=viewer)).version
    assert (await call(served.tls, "ListNodes", metadata=viewer)).total == 0
    code, details = await code_of(call(served.tls, "StartRun", pb.StartRunRequest(node_id="n1"), metadata=viewer))
    assert code == grpc.StatusCode.PERMISSION_DENIED
    assert details == "HubService.StartRun needs the operator role; token 'val' has viewer"
    for name, role in RPC_ROLES.items():
        if role > Role.VIEWER:
            code, _ = await code_of(call(served.tls, name, metadata=viewer))
            assert code == grpc.StatusCode.PERMISSION_DENIED, name


async def test_an_operator_runs_pipelines_but_does_not_manage_nodes(served: Served) -> None:
    operator = served.token("op", Role.OPERATOR)
    code, _ = await code_of(call(served.tls, "StartRun", pb.StartRunRequest(node_id="n1"), metadata=operator))
    assert code == grpc.StatusCode.NOT_FOUND  # let in: the node does not exist
    code, _ = await code_of(call(served.tls, "CreateNode", pb.NodeJson(json="{}"), metadata=operator))
    assert code == grpc.StatusCode.PERMISSION_DENIED


async def test_changes_are_made_and_audited_as_the_tokens_name(served: Served) -> None:
    ops = served.token("ops", Role.ADMIN)
    node = await call(served.tls, "CreateNode", pb.NodeJson(json='{"id": "n1", "name": "n1", "type": "physical"}'),
                      metadata=(*ops, ("x-gamenode-actor", "someone-else")))
    assert node.id == "n1"
    assert served.services.nodes.status_history("n1")[-1].by == "ops"
    viewer = served.token("val", Role.VIEWER)
    await code_of(call(served.tls, "DeleteNode", pb.GetNodeRequest(id="n1"), metadata=viewer))
    await code_of(call(served.tls, "CancelRun", pb.CancelRunRequest(run_id="run-x"), metadata=ops))
    await call(served.tls, "ListNodes", metadata=ops)  # a read: not audited

    seen = [(e.actor, e.role, e.via, e.action, e.target.kind if e.target else None,
             e.target.id if e.target else None, e.status) for e in served.services.audit.query()]
    assert seen == [
        ("ops", "admin", "grpc", "HubService.CancelRun", "run", "run-x", "NOT_FOUND"),
        ("val", "viewer", "grpc", "HubService.DeleteNode", "node", "n1", "PERMISSION_DENIED"),
        ("ops", "admin", "grpc", "HubService.CreateNode", "node", "n1", "OK"),
    ]


# --- over the unix socket -------------------------------------------------------------------------


async def test_the_unix_socket_is_an_admin_without_a_token(served: Served) -> None:
    assert (await call(served.unix, "GetVersion")).version
    body = '{"id": "n2", "name": "n2", "type": "physical"}'
    node = await call(served.unix, "CreateNode", pb.NodeJson(json=body), metadata=(("x-gamenode-actor", "tui"),))
    assert node.id == "n2"
    assert served.services.nodes.status_history("n2")[-1].by == "tui"  # no token: the console names itself
    await call(served.unix, "DeleteNode", pb.GetNodeRequest(id="n2"))
    entry = served.services.audit.query(limit=1)[0]
    assert (entry.actor, entry.role, entry.action, entry.status) == ("unix socket", "admin", "HubService.DeleteNode",
                                                                     "OK")
