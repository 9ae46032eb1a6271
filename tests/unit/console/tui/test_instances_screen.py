"""InstancesScreen: the keyed table, stop/restart/remove, launch (with the hub's reasons), logs."""

from __future__ import annotations

from typing import Any

from fakes import FakeClient
from textual.widgets import DataTable, Input
from tuihelp import app_for, notified, until

from console.tui.client import HubUnavailableError
from console.tui.screens.instances import InstancesScreen
from console.tui.screens.launch import LaunchScreen
from console.tui.screens.logs import LogsScreen
from console.tui.widgets.confirm import ConfirmScreen


async def open_instances(pilot: Any, app: Any) -> InstancesScreen:
    screen = InstancesScreen()
    await app.push_screen(screen)
    await until(pilot, lambda: screen.instances)
    return screen


async def test_table_shows_every_instance() -> None:
    client = FakeClient()
    app = app_for(client)
    async with app.run_test(size=(150, 40)) as pilot:
        screen = await open_instances(pilot, app)
        table = screen.query_one(DataTable)
        assert table.row_count == 3
        assert table.get_row("arena-1")[:4] == ["arena-1", "eu-fra-01", "arena", "1.2.0"]
        assert str(table.get_cell("arena-1", "state")) == "running"
        assert table.get_cell("arena-1", "ports") == "30001→7777/udp"
        assert table.get_cell("arena-1", "uptime") == "3h00m"
        assert table.get_cell("arena-2", "uptime") == "-"


async def test_stop_and_restart_act_on_the_cursor_row_and_refresh() -> None:
    client = FakeClient()
    app = app_for(client)
    async with app.run_test(size=(150, 40)) as pilot:
        await open_instances(pilot, app)
        loads = len(client.called("instances"))
        await pilot.press("s")
        await until(pilot, lambda: client.called("instance_action"))
        assert client.called("instance_action")[0][0] == ("arena-1", "stop")
        await pilot.press("down", "R")
        await until(pilot, lambda: len(client.called("instance_action")) == 2)
        assert client.called("instance_action")[1][0] == ("arena-2", "restart")
        await until(pilot, lambda: len(client.called("instances")) >= loads + 2)


async def test_remove_asks_first_then_runs_the_stop_pipeline_and_follows_it() -> None:
    client = FakeClient()
    client.run_list.append({**client.run_list[0], "id": "run-stop-arena-1", "state": "running"})
    app = app_for(client)
    async with app.run_test(size=(150, 40)) as pilot:
        await open_instances(pilot, app)
        await pilot.press("x")
        await until(pilot, lambda: isinstance(app.screen, ConfirmScreen))
        await pilot.press("y")
        await until(pilot, lambda: client.called("watch_run"))
        assert client.called("stop_instance")[0][0] == ("arena-1", False)
        assert client.called("watch_run")[0][0] == ("run-stop-arena-1",)


async def test_an_action_error_is_a_notification() -> None:
    client = FakeClient()
    client.fail["instance_action"] = HubUnavailableError("node eu-fra-01 is offline")
    app = app_for(client)
    async with app.run_test(size=(150, 40)) as pilot:
        await open_instances(pilot, app)
        await pilot.press("R")
        await until(pilot, lambda: notified(app, "is offline"))


async def test_launch_shows_the_hubs_reasons_then_launches() -> None:
    client = FakeClient()
    client.fail["launch"] = HubUnavailableError("no node fits: eu-ams-01: in maintenance; us-iad-01: needs 4 CPU, "
                                                "1.5 free")
    app = app_for(client)
    async with app.run_test(size=(150, 40)) as pilot:
        screen = await open_instances(pilot, app)
        await pilot.press("n")
        await until(pilot, lambda: isinstance(app.screen, LaunchScreen))
        modal = app.screen
        assert isinstance(modal, LaunchScreen)
        modal.query_one("#selector", Input).value = "region=eu"
        await pilot.press("ctrl+s")
        await until(pilot, lambda: modal.reasons)
        assert "eu-ams-01: in maintenance" in modal.reasons and "us-iad-01: needs 4 CPU" in modal.reasons
        assert app.screen is modal
        await pilot.press("ctrl+s")
        await until(pilot, lambda: app.screen is screen)
        assert client.called("launch")[-1][0] == ("arena", None, "region=eu", None, "spread")
        await until(pilot, lambda: "arena-4" in screen.instances)


async def test_l_opens_the_instance_log() -> None:
    client = FakeClient()
    app = app_for(client)
    async with app.run_test(size=(150, 40)) as pilot:
        await open_instances(pilot, app)
        await pilot.press("l")
        await until(pilot, lambda: isinstance(app.screen, LogsScreen))
        assert app.screen.streams == [{"instance_id": "arena-1"}]
