"""`gamenode tokens create|list|revoke`: on a data directory, through a hub's REST API, and via the hub
that holds the data directory (uvicorn in the test's loop; the CLI in a worker thread)."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import uvicorn

from console import cli
from console.hub.runtime import HubRuntime
from console.models import Role
from console.service import Services
from console.settings import HubSettings
from console.store import Stores

WAIT = 10.0


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("GAMENODE_TOKEN", "GAMENODE_DATA_DIR", "GAMENODE_HTTP_LISTEN", "GAMENODE_CONFIG"):
        monkeypatch.delenv(name, raising=False)


def gamenode(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = cli.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


async def in_thread(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = await asyncio.wait_for(asyncio.to_thread(cli.main, list(argv)), WAIT)
    out, err = capsys.readouterr()
    return code, out, err


def authenticate(data_dir: Path, token: str) -> Role | None:
    stores = Stores.open(data_dir)
    try:
        record = Services.over(stores).api_tokens.authenticate(token)
        return record.role if record else None
    finally:
        stores.close()


# --- on a data directory --------------------------------------------------------------------------


def test_create_list_revoke_on_a_data_dir(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = tmp_path / "data"
    data.mkdir()
    code, out, err = gamenode(capsys, "tokens", "create", "--name", "ci", "--role", "operator", "--ttl-days", "7",
                              "--data-dir", str(data))
    assert code == 0, err
    token = out.strip()  # the token alone on stdout
    token_id = token.split(".")[0]
    assert f"created API token {token_id} (ci, operator, expires " in err
    assert authenticate(data, token) is Role.OPERATOR
    secret = token.split(".")[1]
    assert not any(secret.encode() in p.read_bytes() for p in data.rglob("*") if p.is_file())

    code, out, _ = gamenode(capsys, "tokens", "list", "--data-dir", str(data))
    assert code == 0
    header, row = out.strip().splitlines()
    assert header.split() == ["ID", "NAME", "ROLE", "CREATED", "BY", "EXPIRES"]
    assert row.split()[:3] == [token_id, "ci", "operator"] and secret not in out

    code, out, _ = gamenode(capsys, "tokens", "revoke", token_id, "--data-dir", str(data))
    assert code == 0 and out.strip() == f"revoked API token {token_id} (ci)"
    assert authenticate(data, token) is None

    stores = Stores.open(data)
    try:
        actions = [(e.action, e.via, e.target.id if e.target else "") for e in Services.over(stores).audit.query()]
    finally:
        stores.close()
    assert actions == [("tokens revoke", "cli", token_id), ("tokens create", "cli", token_id)]


def test_mistakes_are_one_line_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = gamenode(capsys, "tokens", "list", "--data-dir", str(tmp_path / "none"))
    assert code == 1 and f"no data directory at {tmp_path / 'none'}" in err
    (tmp_path / "data").mkdir()
    code, _, err = gamenode(capsys, "tokens", "revoke", "ffff", "--data-dir", str(tmp_path / "data"))
    assert code == 1 and "API token 'ffff' not found" in err
    code, _, err = gamenode(capsys, "tokens", "create", "--name", "x", "--role", "viewer", "--ttl-days", "0",
                            "--data-dir", str(tmp_path / "data"))
    assert code == 1 and "--ttl-days" in err
    with pytest.raises(SystemExit):
        cli.main(["tokens", "create", "--name", "x", "--role", "root"])


# --- against a running hub ------------------------------------------------------------------------


@dataclass
class Served:
    url: str
    port: int
    services: Services
    data_dir: Path


@pytest.fixture
async def served(tmp_path: Path) -> AsyncIterator[Served]:
    """A hub's runtime and REST app on a free port, holding the data directory's lock."""
    data = tmp_path / "data"
    stores = Stores.open(data)
    services = Services.over(stores)
    runtime = HubRuntime(services, HubSettings(data_dir=data, grpc_listen="127.0.0.1:0"))
    await runtime.start("127.0.0.1:0", monitor_period=3600)
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(runtime.app(), log_level="warning", lifespan="off"))
    serving = asyncio.create_task(server.serve(sockets=[sock]))
    while not server.started:
        await asyncio.sleep(0.01)
    port = sock.getsockname()[1]
    yield Served(f"http://127.0.0.1:{port}", port, services, data)
    server.should_exit = True
    await serving
    sock.close()
    await runtime.stop(grace=0)
    stores.close()


async def test_through_the_hubs_rest_api(served: Served, capsys: pytest.CaptureFixture[str]) -> None:
    hub = ("--hub", served.url, "--data-dir", str(served.data_dir))  # the admin token of the data dir
    code, out, err = await in_thread(capsys, "tokens", "create", "--name", "dash", "--role", "viewer", *hub)
    assert code == 0, err
    token = out.strip()
    record = served.services.api_tokens.authenticate(token)
    assert record is not None and record.role is Role.VIEWER and record.created_by == "admin (local)"

    code, out, _ = await in_thread(capsys, "tokens", "list", *hub)
    assert code == 0 and {line.split()[1] for line in out.splitlines()[1:]} == {"admin", "dash"}

    code, _, err = await in_thread(capsys, "tokens", "create", "--name", "x", "--role", "admin",
                                   "--hub", served.url, "--token", token)  # a viewer may not
    assert code == 1 and "needs the admin role; token 'dash' has viewer" in err

    code, out, _ = await in_thread(capsys, "tokens", "revoke", record.id, *hub)
    assert code == 0 and served.services.api_tokens.authenticate(token) is None
    entry = served.services.audit.query(limit=1)[0]
    assert (entry.actor, entry.action, entry.status) == ("admin (local)", "DELETE /api/v1/tokens/{token_id}", "204")


async def test_without_a_token_the_hub_says_what_to_do(
    served: Served, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    code, _, err = await in_thread(capsys, "tokens", "list", "--hub", served.url, "--data-dir", str(tmp_path))
    assert code == 1 and f"the hub at {served.url} needs an API token: pass --token" in err


async def test_a_data_dir_held_by_a_hub_goes_through_that_hub(
    served: Served, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GAMENODE_HTTP_LISTEN", f"127.0.0.1:{served.port}")  # the hub's settings
    code, out, err = await in_thread(capsys, "tokens", "create", "--name", "ops", "--role", "operator",
                                     "--data-dir", str(served.data_dir))
    assert code == 0, err
    record = served.services.api_tokens.authenticate(out.strip())
    assert record is not None and record.name == "ops"  # made by the hub that holds the directory
    assert served.services.audit.query(limit=1)[0].action == "POST /api/v1/tokens"
