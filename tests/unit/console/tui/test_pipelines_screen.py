"""PipelinesScreen: the catalog, node choice, the typed params form, launch → run screen."""

from __future__ import annotations

from typing import Any

from fakes import FakeClient
from textual.widgets import Input, OptionList, Select, SelectionList, Switch
from tuihelp import app_for, notified, until

from console.tui.app import GamenodeApp
from console.tui.client import HubUnavailableError
from console.tui.screens.pipelines import PipelinesScreen
from console.tui.screens.run import RunScreen
from console.tui.widgets.params_form import ParamsForm, param_spec


async def open_pipelines(pilot: Any, app: GamenodeApp) -> PipelinesScreen:
    screen = PipelinesScreen()
    await app.push_screen(screen)
    await until(pilot, lambda: screen.query_one(ParamsForm).specs)
    return screen


def test_param_spec_from_catalog_aliases_and_placeholder() -> None:
    assert param_spec({"type": "int", "default": 7}).type == "integer"
    assert "default" not in param_spec({"type": "string", "secret": True, "default": "***"}).model_fields_set
    assert param_spec({"type": "string", "required": True, "default": None}).required


async def test_catalog_nodes_and_typed_fields() -> None:
    client = FakeClient()
    app = app_for(client)
    async with app.run_test(size=(150, 50)) as pilot:
        screen = await open_pipelines(pilot, app)
        assert screen.query_one("#pipeline-list", OptionList).option_count == 2
        assert screen.query_one("#node-list", SelectionList).option_count == 6
        form = screen.query_one(ParamsForm)
        assert set(form.specs) == {"image", "port", "mode", "registry_password"}
        assert isinstance(screen.query_one("#param-mode"), Select)
        assert screen.query_one("#param-port", Input).value == "7777"
        assert screen.query_one("#param-registry_password", Input).password


async def test_bad_params_show_errors_and_nothing_starts() -> None:
    client = FakeClient()
    app = app_for(client)
    async with app.run_test(size=(150, 50)) as pilot:
        screen = await open_pipelines(pilot, app)
        screen.query_one("#node-list", SelectionList).select("eu-fra-01")
        screen.query_one("#param-port", Input).value = "-"
        await pilot.press("ctrl+s")
        await pilot.pause()
        errors = screen.query_one(ParamsForm).errors
        assert errors["image"] == "required param missing"
        assert "expected an integer" in errors["port"]
        assert not client.called("start_run")
        assert not screen.query_one("#error-image").has_class("-empty")


async def test_launch_starts_one_typed_run_per_node_and_opens_the_first() -> None:
    client = FakeClient()
    app = app_for(client)
    async with app.run_test(size=(150, 50)) as pilot:
        screen = await open_pipelines(pilot, app)
        nodes = screen.query_one("#node-list", SelectionList)
        nodes.select("eu-fra-01")
        nodes.select("us-iad-01")
        screen.query_one("#param-image", Input).value = "arena:1.2.0"
        screen.query_one("#param-port", Input).value = "8080"
        screen.query_one("#param-mode", Select).value = "pve"
        await pilot.press("ctrl+s")
        await until(pilot, lambda: isinstance(app.screen, RunScreen))
        calls = client.called("start_run")
        assert [args[0] for args, _ in calls] == ["eu-fra-01", "us-iad-01"]
        args, _ = calls[0]
        assert args[1] == "platform-start"
        assert args[2] == {"image": "arena:1.2.0", "port": 8080, "mode": "pve"}
        assert isinstance(app.screen, RunScreen)
        assert app.screen.run_id == "run-0002"


async def test_a_refused_node_is_a_notification() -> None:
    client = FakeClient()
    client.fail["start_run"] = HubUnavailableError("node 'eu-ams-01' is in maintenance")
    app = app_for(client)
    async with app.run_test(size=(150, 50)) as pilot:
        screen = await open_pipelines(pilot, app)
        screen.query_one("#node-list", SelectionList).select("eu-ams-01")
        screen.query_one("#param-image", Input).value = "arena:1.2.0"
        await pilot.press("ctrl+s")
        await until(pilot, lambda: notified(app, "maintenance"))
        assert app.screen is screen


async def test_other_pipeline_changes_the_form_and_boolean_is_a_switch() -> None:
    client = FakeClient()
    client.pipeline_list.append({"name": "flags", "description": "", "instance": "none", "steps": ["a"],
                                 "params": {"dry": {"type": "boolean", "default": True, "required": False,
                                                    "secret": False, "description": "", "choices": None}}})
    app = app_for(client)
    async with app.run_test(size=(150, 50)) as pilot:
        screen = await open_pipelines(pilot, app)
        screen.query_one("#pipeline-list", OptionList).highlighted = 2
        await until(pilot, lambda: "dry" in screen.query_one(ParamsForm).specs)
        assert screen.selected == "flags"
        assert screen.query_one("#param-dry", Switch).value is True
        assert screen.query_one(ParamsForm).values() == {"dry": True}
