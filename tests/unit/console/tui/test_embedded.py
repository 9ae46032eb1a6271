"""EmbeddedHub: `gamenode hub` as a child process on a data dir, reached over its unix socket."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from console.store import Stores
from console.tui.client import HubClient
from console.tui.embedded import EmbeddedHub, EmbeddedHubError


async def _version(target: str) -> str:
    client = HubClient(target)
    try:
        await client.connect()
        return await client.version()
    finally:
        await client.close()


def test_it_serves_the_console_on_the_data_dirs_socket_and_stops(tmp_path: Path) -> None:
    hub = EmbeddedHub(tmp_path / "data")
    with hub:
        assert hub.target == f"unix:{tmp_path / 'data' / 'hub.sock'}"
        assert asyncio.run(_version(hub.target))
        assert hub.returncode is None
        assert any("gRPC on" in line for line in hub.lines)
    assert hub.returncode is None  # forgotten once stopped
    assert "gRPC on" in (tmp_path / "data" / "hub.log").read_text()


def test_a_data_dir_too_deep_for_a_socket_gets_a_short_one(tmp_path: Path) -> None:
    deep = tmp_path.joinpath(*["d" * 40] * 3)
    with EmbeddedHub(deep) as hub:
        assert not str(hub.socket).startswith(str(deep))
        assert asyncio.run(_version(hub.target))
        socket_dir = hub.socket.parent
    assert not socket_dir.exists()


def test_a_hub_that_cannot_start_says_why(tmp_path: Path) -> None:
    stores = Stores.open(tmp_path / "data")  # holds the data dir's lock
    try:
        with pytest.raises(EmbeddedHubError, match="exited with status 1") as exc:
            EmbeddedHub(tmp_path / "data").start()
        assert "in use by another gamenode process" in str(exc.value)
    finally:
        stores.close()
