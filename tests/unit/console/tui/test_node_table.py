"""NodeTable's repaint path: only changed cells lose their cached renders, and a repaint writes few rows.

These tests pin the private DataTable attributes `NodeTable.update_cell` relies on
(see console/tui/widgets/node_table.py): if a Textual upgrade changes them, they fail
here rather than leaving stale cells on screen.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from textual.app import App, ComposeResult
from textual.widgets.data_table import ColumnKey, RowKey

from console.tui.widgets import node_table
from console.tui.widgets.node_table import ROWS_PER_PAINT, NodeTable

NOW = datetime(2025, 1, 1, tzinfo=UTC)


def node(i: int, cpu: float) -> dict[str, Any]:
    return {"id": f"n{i:03d}", "name": f"n{i:03d}", "status": "online", "online": True,
            "resources": {"cpu_percent": cpu}, "metrics": {}}


class TableApp(App[None]):
    def compose(self) -> ComposeResult:
        yield NodeTable(lambda: NOW, id="nodes")


def screen_text(table: NodeTable) -> str:
    return "\n".join("".join(seg.text for seg in table.render_line(y)) for y in range(table.size.height))


async def test_the_private_attributes_are_there() -> None:
    app = TableApp()
    async with app.run_test(size=(160, 20)):
        table = app.query_one(NodeTable)
        assert table._local_invalidation and node_table._local_invalidation(table)


async def test_a_batched_update_keeps_the_other_cells_renders_and_draws_the_new_text() -> None:
    app = TableApp()
    async with app.run_test(size=(160, 20)) as pilot:
        table = app.query_one(NodeTable)
        table.upsert([node(i, 10.0) for i in range(5)])
        await pilot.pause()
        screen_text(table)  # fill the caches
        count = table._update_count
        cells = set(table._cell_render_cache.keys())
        assert any(key[0] == RowKey("n001") for key in cells)
        table.upsert([node(2, 55.5)])
        assert table._update_count == count  # every other cache entry stays valid
        left = set(table._cell_render_cache.keys())
        assert not any(key[:2] == (RowKey("n002"), ColumnKey("cpu")) for key in left)
        assert {key for key in cells if key[0] != RowKey("n002")} <= left
        assert any(key[:2] == (RowKey("n002"), ColumnKey("name")) for key in left)  # unchanged cell of the row
        text = screen_text(table)
        assert "55.5%" in text and text.count("10.0%") == 4
        await pilot.pause()
        assert "55.5%" in screen_text(table)


async def test_an_update_outside_a_batch_is_textuals_own() -> None:
    app = TableApp()
    async with app.run_test(size=(160, 20)) as pilot:
        table = app.query_one(NodeTable)
        table.upsert([node(1, 10.0)])
        await pilot.pause()
        count = table._update_count
        table.update_cell("n001", "cpu", node_table._text("77.0%"))
        assert table._update_count == count + 1
        assert "77.0%" in screen_text(table)


async def test_rows_in_view_are_written_a_few_per_repaint() -> None:
    app = TableApp()
    async with app.run_test(size=(160, 40)) as pilot:
        table = app.query_one(NodeTable)
        table.upsert([node(i, 10.0) for i in range(60)])
        await pilot.pause()
        table.upsert([node(i, 20.0) for i in range(60)])
        written = [i for i in range(60) if table.get_cell(f"n{i:03d}", "cpu").plain == "20.0%"]
        in_view = table.scrollable_content_region.height - 1
        # the first ROWS_PER_PAINT rows in view now, and every row near the view but out of it
        assert written[:ROWS_PER_PAINT] == list(range(ROWS_PER_PAINT))
        assert ROWS_PER_PAINT not in written and in_view in written
        for _ in range(20):
            await pilot.pause(0.02)
        assert all(table.get_cell(f"n{i:03d}", "cpu").plain == "20.0%"
                   for i in range(in_view + node_table.MARGIN))
        assert "10.0%" not in screen_text(table)
