"""A real `gamenode hub` process: its admin token, REST and gRPC refusing callers without a valid token,
`gamenode tokens` against it, and the console's TLS client with the hub's CA pinned."""

from __future__ import annotations

import asyncio
import stat
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import grpc
import httpx
import pytest
from conftest import REPO_ROOT, HubProcess, hub_env
from grpc import aio

from console.tui.client import HubClient, HubUnavailableError
from proto import gamenode_pb2 as pb
from proto import gamenode_pb2_grpc as pb_grpc


def gamenode(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "console.cli", *argv], cwd=REPO_ROOT, env=hub_env(),
                          capture_output=True, text=True, timeout=60)


def test_rest_needs_a_token_and_the_hub_wrote_its_admin_token(
    tmp_path: Path, start_hub: Callable[[Path], HubProcess]
) -> None:
    hub = start_hub(tmp_path / "data")
    admin_token = tmp_path / "data" / "admin.token"
    assert stat.S_IMODE(admin_token.stat().st_mode) == 0o600
    with httpx.Client(base_url=hub.url, timeout=10) as anonymous:
        r = anonymous.get("/api/v1/nodes")
        assert r.status_code == 401 and r.json()["error"] == "unauthenticated"
        assert r.headers["www-authenticate"] == "Bearer"
        assert anonymous.get("/healthz").status_code == 200
        token = admin_token.read_text().strip()
        assert anonymous.get("/api/v1/nodes", headers={"Authorization": f"Bearer {token}"}).status_code == 200
    hub.stop_cleanly()
    assert admin_token.read_text().strip() == token  # kept across restarts
    hub = start_hub(tmp_path / "data")
    with hub.client() as api:
        assert api.get("/api/v1/nodes").status_code == 200
    hub.stop_cleanly()


def test_a_viewer_token_made_with_the_cli_reads_but_may_not_change(
    tmp_path: Path, start_hub: Callable[[Path], HubProcess]
) -> None:
    hub = start_hub(tmp_path / "data")
    made = gamenode("tokens", "create", "--name", "dashboard", "--role", "viewer", "--hub", hub.url,
                    "--data-dir", str(tmp_path / "data"))
    assert made.returncode == 0, made.stderr
    viewer = made.stdout.strip()
    with httpx.Client(base_url=hub.url, timeout=10, headers={"Authorization": f"Bearer {viewer}"}) as api:
        assert api.get("/api/v1/nodes").status_code == 200
        r = api.post("/api/v1/nodes", json={"id": "n1", "name": "n1", "type": "physical"})
        assert r.status_code == 403 and r.json()["error"] == "forbidden"
    listed = gamenode("tokens", "list", "--hub", hub.url, "--data-dir", str(tmp_path / "data"))
    assert listed.returncode == 0 and "dashboard" in listed.stdout and viewer.split(".")[1] not in listed.stdout
    with hub.client() as admin:
        entries = admin.get("/api/v1/audit", params={"actor": "dashboard"}).json()
    assert [(e["action"], e["status"]) for e in entries] == [("POST /api/v1/nodes", "403")]
    hub.stop_cleanly()
    log = (tmp_path / "data" / "audit.log").read_text()
    assert viewer.split(".")[1] not in log and "dashboard" in log


def test_grpc_over_tls_needs_a_token_and_the_console_client_brings_it(
    tmp_path: Path, start_hub: Callable[[Path], HubProcess]
) -> None:
    hub = start_hub(tmp_path / "data")
    ca_pem = (tmp_path / "data" / "ca.pem").read_bytes()
    token = (tmp_path / "data" / "admin.token").read_text().strip()

    async def check() -> None:
        async with aio.secure_channel(hub.grpc_address, grpc.ssl_channel_credentials(ca_pem)) as channel:
            stub = pb_grpc.HubServiceStub(channel)  # type: ignore[no-untyped-call]
            with pytest.raises(aio.AioRpcError) as refused:
                await stub.ListNodes(pb.ListNodesRequest(), timeout=10)
            assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED

        console = HubClient(hub.grpc_address, token=token, ca_pem=ca_pem)
        await console.connect()
        try:
            assert await console.version()
            assert await console.list_nodes() == []
        finally:
            await console.close()

        anonymous = HubClient(hub.grpc_address, ca_pem=ca_pem)
        await anonymous.connect()
        try:
            with pytest.raises(HubUnavailableError) as error:
                await anonymous.list_nodes()
            assert error.value.code == "unauthenticated"
        finally:
            await anonymous.close()

    asyncio.run(check())
    hub.stop_cleanly()
