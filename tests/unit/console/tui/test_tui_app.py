"""The app: navigation keys, help, command palette, connection failures, footer."""

from __future__ import annotations

import pytest
from fakes import FakeClient, make_app, notices
from textual.widgets import Footer

from console.tui.client import HubUnavailableError
from console.tui.screens.fleet import FleetScreen
from console.tui.screens.help import HelpScreen
from console.tui.screens.node import NodeScreen

SIZE = (160, 45)


async def test_starts_on_the_fleet_screen_with_a_footer() -> None:
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        assert isinstance(app.screen, FleetScreen)
        assert app.screen.query_one(Footer)


async def test_q_goes_back_and_quits_on_the_fleet_screen() -> None:
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        app.open_node("eu-fra-01")
        await pilot.pause()
        assert isinstance(app.screen, NodeScreen)
        assert app.screen.query_one(Footer)
        await pilot.press("q")
        assert isinstance(app.screen, FleetScreen)
        await pilot.press("escape")  # escape on the fleet screen does not quit
        assert app.is_running
        await pilot.press("q")
        await pilot.pause()
    assert app.return_code == 0
    assert not app.is_running


async def test_escape_goes_back() -> None:
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        app.open_node("eu-fra-01")
        await pilot.pause()
        await pilot.press("escape")
        assert isinstance(app.screen, FleetScreen)


async def test_help_lists_the_keys_of_the_screen_and_the_app() -> None:
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        await pilot.press("question_mark")
        assert isinstance(app.screen, HelpScreen)
        keys = {(key, description) for key, description, _ in app.screen.keys}
        assert {("/", "Filter"), (">", "Sort →"), ("s", "Reverse")} <= keys  # the fleet screen's
        assert {("?", "Help"), ("q", "Back/Quit"), ("f", "Fleet"), ("p", "Pipelines")} <= keys  # the app's
        assert ("⏎", "Open") in keys  # the table's
        await pilot.press("escape")
        assert isinstance(app.screen, FleetScreen)


async def test_help_on_the_node_screen_lists_its_actions() -> None:
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        app.open_node("eu-fra-01")
        await pilot.pause()
        await pilot.press("question_mark")
        assert isinstance(app.screen, HelpScreen)
        descriptions = {description for _, description, _ in app.screen.keys}
        assert {"Maintenance on/off", "Labels", "Delete", "New token", "Help", "Back/Quit"} <= descriptions


async def test_the_palette_jumps_to_a_node() -> None:
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause(0.1)
        await pilot.press("colon")
        await pilot.pause()
        await pilot.press(*"us-iad-02")
        await pilot.pause(0.5)
        await pilot.press("enter")
        await pilot.pause(0.2)
        assert isinstance(app.screen, NodeScreen)
        assert app.screen.node_id == "us-iad-02"


async def test_the_palette_lists_screens_and_nodes() -> None:
    from console.tui.commands import GamenodeCommands

    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause(0.1)
        provider = GamenodeCommands(app.screen)
        texts = [text for text, _, _ in provider._commands()]
        assert texts[:5] == ["fleet", "pipelines", "instances", "logs", "rollout"]
        assert "node eu-fra-01" in texts and len(texts) == 5 + 6


async def test_a_screen_that_is_not_there_yet_is_a_notice(monkeypatch: pytest.MonkeyPatch) -> None:
    from console.tui import app as app_module

    monkeypatch.setitem(app_module.SCREENS, "rollout", "console.tui.screens.nowhere:Nothing")
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        await pilot.press("r")
        assert isinstance(app.screen, FleetScreen)
        assert any(severity == "warning" and "not available yet" in message for severity, message in notices(app))


async def test_a_failed_connect_is_a_notification_and_ctrl_r_retries() -> None:
    client = FakeClient()
    client.fail["connect"] = HubUnavailableError("connection refused")
    app = make_app(client)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause(0.1)
        assert not app.is_connected
        assert any(s == "error" and "connection refused" in m and "ctrl+r" in m for s, m in notices(app))
        assert app.screen.table.row_count == 0
        await pilot.press("ctrl+r")
        await pilot.pause(0.2)
        assert app.is_connected
        assert app.screen.table.row_count == 6


async def test_a_failed_watch_is_a_notification() -> None:
    client = FakeClient()
    client.fail["watch_nodes"] = HubUnavailableError("hub went away")
    app = make_app(client)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause(0.1)
        assert any(s == "error" and "hub went away" in m for s, m in notices(app))


async def test_the_client_is_closed_on_exit() -> None:
    client = FakeClient()
    app = make_app(client)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
    assert client.called("close")
