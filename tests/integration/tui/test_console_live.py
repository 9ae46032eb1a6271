"""The console against a real hub process and two real agents (Pilot, over the hub's gRPC: TLS with its CA
pinned, as the local admin)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from fleet_helpers import WAIT, Fleet
from textual.pilot import Pilot

from console.tui.app import GamenodeApp
from console.tui.client import HubClient
from console.tui.screens.fleet import FleetScreen
from console.tui.screens.node import NodeScreen
from console.tui.widgets.prompt import PromptScreen

pytestmark = pytest.mark.slow

NODES = ["tui-a", "tui-b"]
SIZE = (180, 45)


@pytest.fixture
def fleet(tmp_path: Path) -> Iterator[Fleet]:
    fleet = Fleet(tmp_path)
    try:
        fleet.start_hub()
        fleet.start_agents(NODES, labels={"region": "eu"}, location="lab")
        fleet.wait_online(NODES)
        yield fleet
    finally:
        fleet.close()


async def until(pilot: Pilot[Any], what: str, check: Callable[[], bool], timeout: float = WAIT) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
        await pilot.pause(0.1)


def client_of(fleet: Fleet) -> HubClient:
    """The console's client of the fleet's hub over TCP: TLS pinned to DATA_DIR/ca.pem, DATA_DIR/admin.token."""
    return HubClient(fleet.hub.grpc_address, token=(fleet.data_dir / "admin.token").read_text().strip(),
                     ca_pem=(fleet.data_dir / "ca.pem").read_bytes())


def cell(screen: FleetScreen, node_id: str, column: str) -> str:
    return str(getattr(screen.table.get_cell(node_id, column), "plain", screen.table.get_cell(node_id, column)))


async def test_the_fleet_screen_shows_both_nodes_online_with_metrics(fleet: Fleet) -> None:
    app = GamenodeApp(lambda: client_of(fleet), target=fleet.hub.grpc_address)
    async with app.run_test(size=SIZE) as pilot:
        screen = app.screen
        assert isinstance(screen, FleetScreen)
        await until(pilot, "both nodes in the table", lambda: screen.table.node_ids == NODES)
        for node_id in NODES:
            assert cell(screen, node_id, "status") == "online"
            assert cell(screen, node_id, "online") == "●"
            assert cell(screen, node_id, "cpu").endswith("%")
            assert cell(screen, node_id, "mem").endswith("%")
            assert cell(screen, node_id, "agent") not in ("", "-")
            assert cell(screen, node_id, "labels") == "region=eu"
        await pilot.press("slash", *"tui-b", "enter")
        assert screen.table.node_ids == ["tui-b"]


async def test_maintenance_from_the_node_screen_reaches_the_hub(fleet: Fleet) -> None:
    app = GamenodeApp(lambda: client_of(fleet))
    async with app.run_test(size=SIZE) as pilot:
        screen = app.screen
        assert isinstance(screen, FleetScreen)
        await until(pilot, "both nodes in the table", lambda: screen.table.node_ids == NODES)
        await pilot.press("down", "enter")
        node_screen = app.screen
        assert isinstance(node_screen, NodeScreen) and node_screen.node_id == "tui-b"
        await until(pilot, "the node loaded", lambda: node_screen.node is not None)
        await until(pilot, "its metrics history", lambda: bool(node_screen.query_one("#spark-cpu").values))
        await pilot.press("m")
        assert isinstance(app.screen, PromptScreen)
        await pilot.press(*"swap disk", "enter")
        await until(pilot, "the status change answered", lambda: (node_screen.node or {}).get("status")
                    == "maintenance")
        node = await asyncio.to_thread(fleet.node, "tui-b")
        assert node["status"] == "maintenance"
        history = await asyncio.to_thread(fleet.history, "tui-b")
        assert history[-1]["reason"] == "swap disk" and history[-1]["by"] == "admin (local)"  # the token's name
        await pilot.press("escape")
        await until(pilot, "the fleet screen to show it", lambda: cell(screen, "tui-b", "status") == "maintenance")
