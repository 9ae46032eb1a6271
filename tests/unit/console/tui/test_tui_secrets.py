"""The console never shows a secret param's value: masked while typed, never quoted in an error."""

from __future__ import annotations

from typing import Any

from fakes import FakeClient
from textual.widgets import Input, OptionList, SelectionList, Static
from tuihelp import app_for, until

from console.tui.app import GamenodeApp
from console.tui.screens.pipelines import PipelinesScreen
from console.tui.screens.run import RunScreen
from console.tui.widgets.params_form import ParamsForm

SECRET = "hunter2-xyzzy"


def screen_text(app: GamenodeApp) -> str:
    return app.export_screenshot()


async def open_pipelines(pilot: Any, app: GamenodeApp) -> PipelinesScreen:
    screen = PipelinesScreen()
    await app.push_screen(screen)
    await until(pilot, lambda: screen.query_one(ParamsForm).specs)
    return screen


async def test_a_typed_secret_is_masked_and_sent_only_to_the_hub() -> None:
    client = FakeClient()
    app = app_for(client)
    async with app.run_test(size=(150, 50)) as pilot:
        screen = await open_pipelines(pilot, app)
        screen.query_one("#node-list", SelectionList).select("eu-fra-01")
        screen.query_one("#param-image", Input).value = "arena:1.2.0"
        screen.query_one("#param-registry_password", Input).value = SECRET
        await pilot.pause()
        assert SECRET not in screen_text(app)
        await pilot.press("ctrl+s")
        await until(pilot, lambda: isinstance(app.screen, RunScreen))
        args, _ = client.called("start_run")[0]
        assert args[2]["registry_password"] == SECRET


async def test_a_refused_secret_is_not_quoted_under_its_field() -> None:
    client = FakeClient()
    client.pipeline_list.append({"name": "rcon", "description": "", "instance": "none", "steps": ["a"], "params": {
        "rcon_port": {"type": "integer", "default": None, "required": True, "secret": True, "description": "",
                      "choices": None},
        "level": {"type": "integer", "default": None, "required": False, "secret": False, "description": "",
                  "choices": None}}})
    app = app_for(client)
    async with app.run_test(size=(150, 50)) as pilot:
        screen = await open_pipelines(pilot, app)
        screen.query_one("#pipeline-list", OptionList).highlighted = 2
        await until(pilot, lambda: "rcon_port" in screen.query_one(ParamsForm).specs)
        screen.query_one("#param-rcon_port", Input).value = SECRET
        screen.query_one("#param-level", Input).value = "not-a-number"
        await pilot.press("ctrl+s")
        await until(pilot, lambda: "rcon_port" in screen.query_one(ParamsForm).errors)
        errors = screen.query_one(ParamsForm).errors
        assert errors["rcon_port"] == "not a valid integer (the value of a secret param is not shown)"
        assert "not-a-number" in errors["level"]  # an ordinary param's error still says what was wrong
        assert SECRET not in str(screen.query_one("#error-rcon_port", Static).render())
        assert SECRET not in screen_text(app)
        assert not client.called("start_run")
