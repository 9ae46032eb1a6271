"""The fleet screen: every node live, fed by `WatchNodes` (no polling).

Batches from the stream go into a buffer; a one-shot timer applies the buffer
at most twice a second (once a second from 500 nodes on) and exists only while
there is something to apply, so an idle console has no timer running. Applying touches only what changed:
new rows are added, rows leaving the filter are removed, and known rows get
`update_cell` for the cells whose text changed. The filter runs before the
table: a node that does not match never becomes a row.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from typing import Any, ClassVar

from textual import work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.screen import Screen
from textual.timer import Timer
from textual.widgets import DataTable, Footer, Header, Input

from console.errors import InvalidInput
from console.tui.app import gamenode_app
from console.tui.client import NodeBatch
from console.tui.node_filter import NodeFilter
from console.tui.widgets.node_table import COLUMN_KEYS, NodeTable
from console.tui.widgets.status_counts import StatusCounts

__all__ = ["FleetScreen"]

FLUSH_INTERVAL = 0.5
"""Seconds between two table updates at the most (≤ 2 repaints a second from the stream)..."""
LARGE_FLEET = 500
LARGE_FLEET_INTERVAL = 1.0
"""... and one a second from `LARGE_FLEET` nodes on: an apply converts and compares every changed node, which costs
tens of milliseconds at 1,000 nodes."""
AGES_INTERVAL = 30.0
"""Seconds between two refreshes of the SEEN column (ages move even when nothing is reported)."""
RETRY_MAX = 30.0
"""Longest wait before watching again after the stream failed."""


class FleetScreen(Screen[None]):
    """Node table with counts by status, `/` filter and sorting; enter opens a node."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("slash", "filter", "Filter", key_display="/"),
        Binding("escape", "clear_filter", "Clear filter", show=False),
        Binding("greater_than_sign", "sort_next(1)", "Sort →", key_display=">"),
        Binding("less_than_sign", "sort_next(-1)", "Sort ←", key_display="<"),
        Binding("s", "reverse", "Reverse"),
        Binding("N", "sort('name')", "By name", show=False),
        Binding("S", "sort('status')", "By status", show=False),
        Binding("C", "sort('cpu')", "By CPU", show=False),
        Binding("M", "sort('mem')", "By memory", show=False),
        Binding("G", "sort('gpu')", "By GPU", show=False),
        Binding("D", "sort('disk')", "By disk", show=False),
        Binding("A", "sort('seen')", "By last seen", show=False),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.nodes: dict[str, dict[str, Any]] = {}
        """Every node of the stream (shown or not)."""
        self.filter = NodeFilter.parse("")
        self._pending: dict[str, dict[str, Any] | None] = {}
        """Node id → its newest state (None: deleted), not yet applied."""
        self._snapshot_ids: set[str] | None = None
        self._flush_timer: Timer | None = None
        self._last_flush = -FLUSH_INTERVAL

    def compose(self) -> ComposeResult:
        app = gamenode_app(self)
        yield Header()
        yield StatusCounts(id="counts")
        yield Input(placeholder="filter: text, or labels: region=eu,gpu,tier in (a,b)  (enter: keep, escape: clear)",
                    id="filter")
        yield NodeTable(app.clock, id="nodes")
        yield Footer()

    @property
    def table(self) -> NodeTable:
        return self.query_one(NodeTable)

    def on_mount(self) -> None:
        self.sub_title = "fleet"
        self.table.focus()
        self._show_counts()
        self.set_interval(AGES_INTERVAL, self.table.refresh_ages)
        self._watch()

    # --- the stream ---------------------------------------------------------------

    @work(exclusive=True, group="watch-nodes")
    async def _watch(self) -> None:
        """Follow `WatchNodes` for as long as the screen lives; watch again after a failure."""
        client = await gamenode_app(self).connected()
        delay = 1.0
        while True:
            try:
                async for batch in client.watch_nodes():
                    self.receive(batch)
                    delay = 1.0
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self.notify(f"watching nodes failed: {exc} (retrying in {delay:g} s)", title="Hub",
                            severity="error")
            await asyncio.sleep(delay)
            delay = min(delay * 2, RETRY_MAX)

    def receive(self, batch: NodeBatch) -> None:
        """Buffer one batch of the stream; the table is updated by the flush timer."""
        if batch.snapshot and self._snapshot_ids is None:
            self._snapshot_ids = set()
        for node in batch.nodes:
            node_id = str(node.get("id", ""))
            self._pending[node_id] = node
            if self._snapshot_ids is not None:
                self._snapshot_ids.add(node_id)
        for node_id in batch.deleted:
            self._pending[node_id] = None
        if batch.snapshot_done and self._snapshot_ids is not None:
            for node_id in self.nodes.keys() - self._snapshot_ids:  # gone while we were not watching
                self._pending.setdefault(node_id, None)
            self._snapshot_ids = None
        self._schedule_flush()

    def _schedule_flush(self) -> None:
        if self._flush_timer is not None or not self._pending:
            return
        interval = LARGE_FLEET_INTERVAL if len(self.nodes) >= LARGE_FLEET else FLUSH_INTERVAL
        delay = max(0.01, self._last_flush + interval - time.monotonic())
        self._flush_timer = self.set_timer(delay, self.flush, name="fleet-flush")

    def flush(self) -> None:
        """Apply every buffered change to the table (the timer calls this; tests may too)."""
        if self._flush_timer is not None:
            self._flush_timer.stop()
            self._flush_timer = None
        self._last_flush = time.monotonic()
        pending, self._pending = self._pending, {}
        if not pending:
            return
        changed = [node for node in pending.values() if node is not None]
        deleted = [node_id for node_id, node in pending.items() if node is None and node_id in self.nodes]
        for node in changed:
            self.nodes[str(node.get("id", ""))] = node
        for node_id in deleted:
            del self.nodes[node_id]
        gamenode_app(self).live.update(changed, deleted)
        self._apply(changed, deleted)

    def _apply(self, changed: list[dict[str, Any]], deleted: list[str]) -> None:
        """Put the changes into the table: filter first, then add, update or remove rows."""
        table = self.table
        cursor = table.cursor_node
        shown = [node for node in changed if self.filter.matches(node)]
        hidden = [str(node.get("id", "")) for node in changed if not self.filter.matches(node)]
        table.remove_nodes([*deleted, *hidden])
        added, columns = table.upsert(shown)
        if added or table.sort_column in columns:
            table.resort()
        table.keep_cursor_on(cursor)
        self._show_counts()

    def _show_counts(self) -> None:
        counts = Counter(str(node.get("status", "")) for node in self.nodes.values())
        self.query_one(StatusCounts).show_counts(counts, self.table.row_count, len(self.nodes), self.filter.text)

    # --- filter -------------------------------------------------------------------

    def set_filter(self, text: str) -> bool:
        """Show only the nodes matching `text`; False (nothing changed) when it is not a valid filter."""
        try:
            new = NodeFilter.parse(text)
        except InvalidInput as exc:
            self.query_one("#filter", Input).border_subtitle = str(exc)
            return False
        self.query_one("#filter", Input).border_subtitle = ""
        if new == self.filter:
            return True
        self.filter = new
        table = self.table
        cursor = table.cursor_node
        table.remove_nodes([node_id for node_id, node in self.nodes.items()
                      if table.has_node(node_id) and not new.matches(node)])
        appear = [node for node_id, node in self.nodes.items() if not table.has_node(node_id) and new.matches(node)]
        if appear:
            table.upsert(appear)
            table.resort()
        table.keep_cursor_on(cursor)
        self._show_counts()
        return True

    def on_input_changed(self, event: Input.Changed) -> None:
        if event.input.id == "filter":
            self.set_filter(event.value)

    def on_input_submitted(self, event: Input.Submitted) -> None:
        if event.input.id == "filter" and self.set_filter(event.value):
            event.input.display = bool(event.value)
            self.table.focus()

    # --- table events -------------------------------------------------------------

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        if event.row_key.value is not None:
            gamenode_app(self).open_node(str(event.row_key.value))

    def on_data_table_header_selected(self, event: DataTable.HeaderSelected) -> None:
        if event.column_key.value is not None:
            self.table.sort_by(str(event.column_key.value))

    # --- actions ------------------------------------------------------------------

    def action_filter(self) -> None:
        """Open the filter input."""
        filter_input = self.query_one("#filter", Input)
        filter_input.display = True
        filter_input.focus()

    def action_clear_filter(self) -> None:
        """Clear the filter and go back to the table."""
        filter_input = self.query_one("#filter", Input)
        filter_input.value = ""
        self.set_filter("")
        filter_input.display = False
        self.table.focus()

    def action_sort(self, column: str) -> None:
        """Sort by a column (again: the other way)."""
        self.table.sort_by(column)

    def action_sort_next(self, step: int) -> None:
        """Sort by the next (1) or previous (-1) column."""
        index = COLUMN_KEYS.index(self.table.sort_column)
        self.table.sort_by(COLUMN_KEYS[(index + step) % len(COLUMN_KEYS)], reverse=False)

    def action_reverse(self) -> None:
        """Reverse the order."""
        self.table.sort_by(self.table.sort_column, reverse=not self.table.sort_reverse)
