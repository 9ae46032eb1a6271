"""The fleet screen: rows from the watch stream, cell-level deltas, coalescing, filter, sort, counts."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from fakes import FakeClient, fleet, make_app, make_node
from rich.text import Text
from textual.widgets import Input

from console.tui.app import GamenodeApp
from console.tui.client import NodeBatch
from console.tui.screens.fleet import FleetScreen
from console.tui.screens.node import NodeScreen
from console.tui.widgets.node_table import NodeTable
from console.tui.widgets.status_counts import StatusCounts

SIZE = (180, 40)
IDS = ["ap-sgp-01", "eu-ams-01", "eu-fra-01", "eu-fra-02", "us-iad-01", "us-iad-02"]


class Spy:
    """Counts the table's row and cell calls."""

    def __init__(self, table: NodeTable, monkeypatch: pytest.MonkeyPatch) -> None:
        self.cells: list[tuple[str, str]] = []
        self.added: list[str] = []
        self.removed: list[str] = []
        update_cell, add_row, remove_row = table.update_cell, table.add_row, table.remove_row

        def spy_update(row: Any, column: Any, value: Any, **kw: Any) -> None:
            self.cells.append((str(row), str(column)))
            update_cell(row, column, value, **kw)

        def spy_add(*cells: Any, key: Any = None, **kw: Any) -> Any:
            self.added.append(str(key))
            return add_row(*cells, key=key, **kw)

        def spy_remove(key: Any) -> None:
            self.removed.append(str(key))
            remove_row(key)

        monkeypatch.setattr(table, "update_cell", spy_update)
        monkeypatch.setattr(table, "add_row", spy_add)
        monkeypatch.setattr(table, "remove_row", spy_remove)
        monkeypatch.setattr(table, "clear", lambda *a, **k: pytest.fail("the table is never cleared"))


def fleet_screen(app: GamenodeApp) -> FleetScreen:
    screen = app.screen
    assert isinstance(screen, FleetScreen)
    return screen


def changed(node_id: str, **fields: Any) -> dict[str, Any]:
    node = copy.deepcopy(next(n for n in fleet() if n["id"] == node_id))
    for key, value in fields.items():
        if key in ("cpu_percent", "memory_percent"):
            node["resources"][key] = value
        else:
            node[key] = value
    return node


def cell(screen: FleetScreen, node_id: str, column: str) -> str:
    value = screen.table.get_cell(node_id, column)
    return value.plain if isinstance(value, Text) else str(value)


async def test_the_snapshot_fills_the_table_in_id_order() -> None:
    app = make_app(FakeClient(snapshot_chunk=4))  # two snapshot messages
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause(0.1)
        screen = fleet_screen(app)
        assert screen.table.node_ids == IDS
        assert cell(screen, "eu-fra-01", "status") == "online"
        assert cell(screen, "eu-fra-01", "cpu") == "68.1%"
        assert cell(screen, "eu-fra-01", "agent") == "0.3.0"
        assert cell(screen, "eu-fra-01", "labels") == "gpu=l4,region=eu,tier=gold"
        assert cell(screen, "eu-fra-01", "rx") == "5.7M/s"
        assert cell(screen, "eu-fra-01", "instances") == "2"
        assert cell(screen, "eu-fra-01", "seen") == "now"
        assert cell(screen, "us-iad-02", "seen") == "3d"
        assert cell(screen, "ap-sgp-01", "seen") == "never"
        assert cell(screen, "ap-sgp-01", "cpu") == "-"
        assert screen.table.get_cell("eu-fra-01", "status").style == "green"
        assert app.live.ids() == IDS


async def test_the_header_counts_nodes_by_status() -> None:
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause(0.1)
        counts = str(app.screen.query_one(StatusCounts).render())
        assert "online 2" in counts and "ready 1" in counts and "maintenance 1" in counts
        assert "offline 2" in counts and "6 of 6 shown" in counts


async def test_a_delta_updates_only_the_changed_cells(monkeypatch: pytest.MonkeyPatch) -> None:
    client = FakeClient()
    app = make_app(client)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause(0.1)
        screen = fleet_screen(app)
        spy = Spy(screen.table, monkeypatch)
        client.push_nodes(changed("eu-fra-02", cpu_percent=99.0))
        await pilot.pause(0.7)
        assert spy.cells == [("eu-fra-02", "cpu")]
        assert spy.added == [] and spy.removed == []
        assert cell(screen, "eu-fra-02", "cpu") == "99.0%"
        assert app.live.get("eu-fra-02")["resources"]["cpu_percent"] == 99.0  # type: ignore[index]


async def test_deltas_are_coalesced_and_no_timer_runs_when_idle(monkeypatch: pytest.MonkeyPatch) -> None:
    client = FakeClient()
    app = make_app(client)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause(0.6)
        screen = fleet_screen(app)
        spy = Spy(screen.table, monkeypatch)
        client.push_nodes(changed("eu-fra-02", cpu_percent=5.0))
        await pilot.pause(0.05)  # the first change after a quiet time shows at once
        assert spy.cells == [("eu-fra-02", "cpu")]
        for value in (10.0, 20.0, 30.0):
            client.push_nodes(changed("eu-fra-02", cpu_percent=value))
        await pilot.pause(0.05)
        assert screen._flush_timer is not None  # one flush pending for the three batches
        assert len(spy.cells) == 1
        await pilot.pause(0.7)
        assert spy.cells == [("eu-fra-02", "cpu")] * 2  # applied once more, as it is now
        assert cell(screen, "eu-fra-02", "cpu") == "30.0%"
        assert screen._flush_timer is None  # idle: nothing scheduled


async def test_new_and_deleted_nodes_add_and_remove_rows() -> None:
    client = FakeClient()
    app = make_app(client)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause(0.1)
        screen = fleet_screen(app)
        client.push_nodes(make_node("eu-fra-00", "Frankfurt 0", "online", "eu-central", {"region": "eu"}),
                          deleted=("us-iad-02",))
        await pilot.pause(0.7)
        assert screen.table.node_ids == ["ap-sgp-01", "eu-ams-01", "eu-fra-00", "eu-fra-01", "eu-fra-02",
                                         "us-iad-01"]
        assert "online 3" in str(screen.query_one(StatusCounts).render())


async def test_a_new_snapshot_drops_the_nodes_it_does_not_have() -> None:
    client = FakeClient()
    app = make_app(client)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause(0.1)
        screen = fleet_screen(app)
        nodes = [n for n in fleet() if n["id"] != "ap-sgp-01"]
        client.push(NodeBatch(snapshot=True, nodes=nodes, deleted=[], snapshot_done=True))
        await pilot.pause(0.7)
        assert screen.table.node_ids == IDS[1:]


@pytest.mark.parametrize(("text", "expected"), [
    ("fra", ["eu-fra-01", "eu-fra-02"]),
    ("virginia", ["us-iad-01", "us-iad-02"]),
    ("eu-central", ["eu-fra-01", "eu-fra-02"]),
    ("region=us", ["us-iad-01", "us-iad-02"]),
    ("gpu", ["eu-fra-01", "us-iad-01"]),
    ("tier in (gold,silver)", ["eu-fra-01", "eu-fra-02", "us-iad-01"]),
    ("region=eu,!gpu", ["eu-ams-01", "eu-fra-02"]),
    ("nothing-matches", []),
])
async def test_the_filter_takes_text_or_a_label_selector(text: str, expected: list[str]) -> None:
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause(0.1)
        screen = fleet_screen(app)
        await pilot.press("slash")
        await pilot.press(*text)
        await pilot.press("enter")
        assert screen.table.node_ids == expected
        assert screen.table.has_focus
        assert f"{len(expected)} of 6 shown" in str(screen.query_one(StatusCounts).render())


async def test_the_filter_adds_and_removes_only_rows_that_change_visibility(monkeypatch: pytest.MonkeyPatch) -> None:
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause(0.1)
        screen = fleet_screen(app)
        screen.set_filter("region=eu")
        spy = Spy(screen.table, monkeypatch)
        screen.set_filter("tier=gold")  # eu-ams-01 and eu-fra-02 leave, us-iad-01 comes
        assert sorted(spy.removed) == ["eu-ams-01", "eu-fra-02"]
        assert spy.added == ["us-iad-01"]
        assert screen.table.node_ids == ["eu-fra-01", "us-iad-01"]


async def test_a_bad_selector_leaves_the_rows_and_says_why() -> None:
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause(0.1)
        screen = fleet_screen(app)
        await pilot.press("slash", *"region=us")
        assert screen.table.node_ids == ["us-iad-01", "us-iad-02"]
        screen.query_one("#filter", Input).value = "tier in (gold"
        await pilot.pause()
        assert screen.table.node_ids == ["us-iad-01", "us-iad-02"]
        assert "column" in str(screen.query_one("#filter").border_subtitle)
        await pilot.press("escape")
        assert screen.table.row_count == 6
        assert screen.filter.text == ""
        assert screen.table.has_focus


async def test_a_delta_moves_a_node_out_of_the_filter(monkeypatch: pytest.MonkeyPatch) -> None:
    client = FakeClient()
    app = make_app(client)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause(0.1)
        screen = fleet_screen(app)
        screen.set_filter("tier=gold")
        client.push_nodes(changed("eu-fra-01", labels={"region": "eu", "tier": "silver"}))
        await pilot.pause(0.7)
        assert screen.table.node_ids == ["us-iad-01"]
        screen.set_filter("")
        assert screen.table.node_ids == IDS


async def test_sorting_keeps_the_cursor_on_its_node() -> None:
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause(0.1)
        screen = fleet_screen(app)
        await pilot.press("down", "down", "down")
        assert screen.table.cursor_node == "eu-fra-02"
        await pilot.press("C")  # by CPU, ascending; unknown first
        order = screen.table.node_ids
        assert order[:2] == ["ap-sgp-01", "us-iad-02"]
        cpus = [app.live.get(i)["resources"]["cpu_percent"] for i in order[2:]]  # type: ignore[index]
        assert cpus == sorted(cpus)
        assert screen.table.cursor_node == "eu-fra-02"
        await pilot.press("s")  # the other way
        assert screen.table.node_ids == order[::-1] or screen.table.node_ids[0] != order[0]
        assert screen.table.cursor_node == "eu-fra-02"
        assert str(screen.table.columns["cpu"].label).endswith("▼")  # type: ignore[index]


async def test_sort_keys_cycle_through_columns() -> None:
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause(0.1)
        screen = fleet_screen(app)
        await pilot.press("greater_than_sign")
        assert screen.table.sort_column == "name"
        assert screen.table.node_ids[0] == "eu-ams-01"  # Amsterdam 1
        await pilot.press("less_than_sign", "less_than_sign")
        assert screen.table.sort_column == "seen"


async def test_clicking_a_header_sorts_by_it() -> None:
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause(0.1)
        screen = fleet_screen(app)
        region = screen.table.region
        x = 2 + 12 + 2 + 14 + 2 + 3  # inside STATUS (cell padding 1 on each side)
        await pilot.click(NodeTable, offset=(x, 0))
        assert screen.table.sort_column == "status", region


async def test_a_live_sort_column_reorders_on_a_delta() -> None:
    client = FakeClient()
    app = make_app(client)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause(0.1)
        screen = fleet_screen(app)
        screen.table.sort_by("cpu", reverse=True)
        client.push_nodes(changed("eu-fra-02", cpu_percent=100.0))
        await pilot.pause(0.7)
        assert screen.table.node_ids[0] == "eu-fra-02"


async def test_enter_opens_the_node_under_the_cursor() -> None:
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause(0.1)
        await pilot.press("down", "down", "enter")
        await pilot.pause()
        assert isinstance(app.screen, NodeScreen)
        assert app.screen.node_id == "eu-fra-01"
