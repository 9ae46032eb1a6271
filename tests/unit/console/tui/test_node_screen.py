"""The node screen: inventory, history, sparklines, instances, and the actions calling the hub."""

from __future__ import annotations

import copy
from datetime import timedelta

import pytest
from fakes import FIXED_NOW, SAMPLES, FakeClient, iso, make_app, notices, sample
from textual.widgets import DataTable, Input

from console.tui.app import GamenodeApp
from console.tui.client import HubUnavailableError
from console.tui.screens.fleet import FleetScreen
from console.tui.screens.node import NodeScreen, parse_label_edit
from console.tui.widgets.confirm import ConfirmScreen
from console.tui.widgets.message import MessageScreen
from console.tui.widgets.metric_spark import MetricSpark
from console.tui.widgets.node_inventory import NodeInventory, inventory_rows
from console.tui.widgets.prompt import PromptScreen

SIZE = (160, 45)


async def open_node(app: GamenodeApp, pilot: object, node_id: str) -> NodeScreen:
    await pilot.pause(0.1)  # type: ignore[attr-defined]
    app.open_node(node_id)
    await pilot.pause(0.2)  # type: ignore[attr-defined]
    screen = app.screen
    assert isinstance(screen, NodeScreen)
    return screen


def test_parse_label_edit() -> None:
    assert parse_label_edit("a=1, b-, c") == ({"a": "1", "c": ""}, ["b"])
    assert parse_label_edit(" ") == ({}, [])
    with pytest.raises(ValueError, match="needs a key"):
        parse_label_edit("=x")
    with pytest.raises(ValueError, match="needs a key"):
        parse_label_edit("-")


async def test_it_shows_inventory_history_metrics_and_instances() -> None:
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_node(app, pilot, "eu-fra-01")
        assert screen.query_one(NodeInventory)
        text = " ".join(str(value) for _, value in inventory_rows(screen.node or {}))
        assert "AMD EPYC 7443P · 24 cores" in text and "2 x NVIDIA L4 (24G)" in text
        assert "0.3.0 (docker, pipeline)" in text and "gpu=l4,region=eu,tier=gold" in text
        assert len(screen.query_one("#spark-cpu", MetricSpark).values) == SAMPLES
        assert len(screen.query_one("#spark-gpu", MetricSpark).values) == SAMPLES
        instances = screen.query_one("#instances", DataTable)
        assert [str(k.value) for k in instances.rows] == ["arena-1", "arena-2"]


async def test_the_status_history_is_listed_newest_first() -> None:
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_node(app, pilot, "eu-ams-01")
        history = screen.query_one("#history", DataTable)
        assert history.row_count == 2
        assert history.get_row_at(0)[4] == "disk replacement"


async def test_live_samples_extend_the_sparklines() -> None:
    client = FakeClient()
    app = make_app(client)
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_node(app, pilot, "eu-fra-02")
        node = copy.deepcopy(client.nodes["eu-fra-02"])
        node["metrics"] = {**sample(0, 2), "at": iso(FIXED_NOW + timedelta(seconds=10)), "cpu_percent": 77.0}
        client.push_nodes(node)
        await pilot.pause(0.7)
        spark = screen.query_one("#spark-cpu", MetricSpark)
        assert len(spark.values) == SAMPLES + 1 and spark.values[-1] == 77.0
        client.push_nodes(node)  # the same sample again: not added twice
        await pilot.pause(0.7)
        assert len(spark.values) == SAMPLES + 1


async def test_maintenance_on_asks_a_reason_and_calls_the_hub() -> None:
    client = FakeClient()
    app = make_app(client)
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_node(app, pilot, "eu-fra-01")
        await pilot.press("m")
        assert isinstance(app.screen, PromptScreen)
        await pilot.press("enter")  # a reason is needed
        assert isinstance(app.screen, PromptScreen)
        await pilot.press(*"kernel update", "enter")
        await pilot.pause(0.2)
        assert client.called("set_status") == [(("eu-fra-01", "maintenance", "kernel update"), {})]
        assert app.screen is screen and screen.node is not None and screen.node["status"] == "maintenance"
        assert screen.query_one("#history", DataTable).get_row_at(0)[4] == "kernel update"


async def test_maintenance_off_goes_back_to_online() -> None:
    client = FakeClient()
    app = make_app(client)
    async with app.run_test(size=SIZE) as pilot:
        await open_node(app, pilot, "eu-ams-01")
        await pilot.press("m", "enter")
        await pilot.pause(0.2)
        assert client.called("set_status") == [(("eu-ams-01", "online", ""), {})]


async def test_escape_cancels_the_reason_prompt() -> None:
    client = FakeClient()
    app = make_app(client)
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_node(app, pilot, "eu-fra-01")
        await pilot.press("m", "escape")
        assert app.screen is screen
        assert not client.called("set_status")


async def test_labels_are_edited_with_a_small_input() -> None:
    client = FakeClient()
    app = make_app(client)
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_node(app, pilot, "eu-fra-01")
        await pilot.press("e")
        assert isinstance(app.screen, PromptScreen)
        app.screen.query_one(Input).value = "tier=platinum,gpu-"
        await pilot.press("enter")
        await pilot.pause(0.2)
        assert client.called("update_labels") == [(("eu-fra-01", {"tier": "platinum"}, ["gpu"]), {})]
        assert screen.node is not None and screen.node["labels"] == {"region": "eu", "tier": "platinum"}


async def test_delete_asks_first_then_deletes_and_goes_back() -> None:
    client = FakeClient()
    app = make_app(client)
    async with app.run_test(size=SIZE) as pilot:
        await open_node(app, pilot, "us-iad-02")
        await pilot.press("d")
        assert isinstance(app.screen, ConfirmScreen)
        await pilot.press("n")
        assert not client.called("delete_node")
        await pilot.press("d", "y")
        await pilot.pause(0.7)
        assert client.called("delete_node") == [(("us-iad-02",), {})]
        assert isinstance(app.screen, FleetScreen)
        assert "us-iad-02" not in app.screen.table.node_ids


async def test_a_new_token_is_shown_once() -> None:
    client = FakeClient()
    app = make_app(client)
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_node(app, pilot, "eu-fra-02")
        await pilot.press("t")
        assert isinstance(app.screen, ConfirmScreen)
        await pilot.press("y")
        await pilot.pause(0.2)
        assert isinstance(app.screen, MessageScreen)
        assert app.screen.value == "gn_eu-fra-02_5ecret"
        await pilot.press("enter")
        assert app.screen is screen


async def test_hub_errors_become_notifications() -> None:
    client = FakeClient()
    client.fail["delete_node"] = HubUnavailableError("node 'eu-fra-01' has live instances")
    app = make_app(client)
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_node(app, pilot, "eu-fra-01")
        await pilot.press("d", "y")
        await pilot.pause(0.2)
        assert app.screen is screen
        assert ("error", "deleting failed: node 'eu-fra-01' has live instances") in notices(app)


async def test_an_unknown_node_is_a_notification() -> None:
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await open_node(app, pilot, "nope")
        assert any(s == "error" and "not found" in m for s, m in notices(app))
