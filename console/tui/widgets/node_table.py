"""The fleet's node table: one keyed row per node, cells updated in place.

`upsert(nodes)` adds the rows of new nodes and, for known ones, calls
`update_cell` only for the cells whose text changed; nothing ever clears or
rebuilds the table. Columns have fixed widths, so an update never re-measures
the table. Sorting goes by raw values (numbers as numbers), and the cursor
stays on the node it was on.

Repaints redraw only the changed cells. Textual's `DataTable.update_cell` bumps
`_update_count`, which is part of the key of every render cache (cells, rows,
lines), so any one update makes the next repaint render every visible cell
again (80-150 ms at 200x50, while a key press waits). Inside `batch_cells()`
`NodeTable.update_cell` instead stores the value and, at the end of the batch,
drops only the cached renders of the changed cells and of the lines of their
rows, then repaints just those rows. This relies on private attributes of
Textual's DataTable (`_data` and the four render caches, whose keys start with
the row key, or the row index for `_row_renderable_cache`, or the line for
`_line_cache`); `_local_invalidation()` checks they are there, and without them
`update_cell` is Textual's own. tests/unit/console/tui/test_node_table.py
checks the caches' keys and that what is drawn is current.

Even so, repainting a screenful of changed rows takes ~40 ms, so at most
`ROWS_PER_PAINT` rows in view are written between two repaints; the others
stay stale and are written after the next repaint (`call_after_refresh`), a
few frames later. A key press is then never behind more than one such repaint.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, ClassVar, Self

from rich.text import Text
from textual.binding import Binding, BindingType
from textual.coordinate import Coordinate
from textual.geometry import Region
from textual.widgets import DataTable
from textual.widgets.data_table import CellDoesNotExist, ColumnKey, RowDoesNotExist, RowKey

from console.tui.fmt import STATUS_STYLES, ago, labels_text, percent, rate
from console.tui.support import as_datetime

__all__ = ["COLUMNS", "Column", "NodeTable", "node_cells"]

Cell = Text
SortValue = tuple[int, Any]


@dataclass(frozen=True, slots=True)
class Column:
    key: str
    label: str
    width: int
    numeric: bool = False


COLUMNS: tuple[Column, ...] = (
    Column("id", "ID", 12),
    Column("name", "NAME", 14),
    Column("status", "STATUS", 11),
    Column("online", "ON", 2),
    Column("location", "LOCATION", 12),
    Column("labels", "LABELS", 20),
    Column("cpu", "CPU%", 6, True),
    Column("mem", "MEM%", 6, True),
    Column("gpu", "GPU%", 6, True),
    Column("disk", "DISK%", 6, True),
    Column("rx", "RX", 8, True),
    Column("tx", "TX", 8, True),
    Column("instances", "INST", 4, True),
    Column("agent", "AGENT", 7),
    Column("seen", "SEEN", 5),
)
COLUMN_KEYS = tuple(c.key for c in COLUMNS)
SEEN_NOW = datetime.max.replace(tzinfo=UTC)
"""The SEEN value of a node whose agent is connected (newest of all when sorting)."""
MARGIN = 20
"""Rows above and below the visible ones whose cells are kept current too."""
ROWS_PER_PAINT = 12
"""Rows in view written between two repaints at the most (rows out of view cost no repaint)."""


def _net(node: dict[str, Any], field: str) -> float | None:
    nets = node.get("metrics", {}).get("nets") or []
    return sum(float(n.get(field, 0.0)) for n in nets) if nets else None


def _seen(node: dict[str, Any]) -> datetime | None:
    """When the hub last heard of the node: now while its agent is connected, else `last_online`."""
    return SEEN_NOW if node.get("online") else as_datetime(node.get("last_online"))


def node_values(node: dict[str, Any]) -> dict[str, Any]:
    """The raw value of every column (None when unknown), for display and sorting."""
    res = node.get("resources") or {}
    agent = (node.get("hardware") or {}).get("agent") or {}
    instances = res.get("instances", node.get("metrics", {}).get("instances"))
    return {
        "id": node.get("id", ""), "name": node.get("name", ""), "status": node.get("status", ""),
        "online": bool(node.get("online")), "location": node.get("location", ""),
        "labels": labels_text(node.get("labels") or {}),
        "cpu": res.get("cpu_percent"), "mem": res.get("memory_percent"),
        "gpu": res.get("gpu_utilization_percent"), "disk": res.get("disk_percent"),
        "rx": _net(node, "rx_bytes_per_s"), "tx": _net(node, "tx_bytes_per_s"),
        "instances": instances, "agent": agent.get("version", ""), "seen": _seen(node),
    }


def _text(value: str, style: str = "") -> Text:
    """A cell as Text: DataTable would parse a plain str as markup on every render."""
    return Text(value, style=style, no_wrap=True, end="")


_FORMATS: dict[str, Callable[[dict[str, Any]], Text]] = {
    "id": lambda v: _text(v["id"]),
    "name": lambda v: _text(v["name"]),
    "status": lambda v: _text(v["status"] or "-", STATUS_STYLES.get(v["status"], "dim")),
    "online": lambda v: _text("●", "green") if v["online"] else _text("○", "dim"),
    "location": lambda v: _text(v["location"]),
    "labels": lambda v: _text(v["labels"]),
    "cpu": lambda v: _text(percent(v["cpu"])),
    "mem": lambda v: _text(percent(v["mem"])),
    "gpu": lambda v: _text(percent(v["gpu"])),
    "disk": lambda v: _text(percent(v["disk"])),
    "rx": lambda v: _text(rate(v["rx"])),
    "tx": lambda v: _text(rate(v["tx"])),
    "instances": lambda v: _text("-" if v["instances"] is None else str(v["instances"])),
    "agent": lambda v: _text(v["agent"] or "-"),
}


def cell_text(column: str, values: dict[str, Any], now: datetime) -> Text:
    """The text of one column of a node's row."""
    if column == "seen":
        return _text("now" if values["seen"] == SEEN_NOW else ago(values["seen"], now))
    return _FORMATS[column](values)


def node_cells(values: dict[str, Any], now: datetime) -> tuple[Text, ...]:
    """The text of every column, in `COLUMNS` order."""
    return tuple(cell_text(key, values, now) for key in COLUMN_KEYS)


def _sort_value(value: Any) -> SortValue:
    """Unknown values first, then by value (times and numbers as such, text case-insensitively)."""
    if value is None:
        return (0, 0)
    if isinstance(value, str):
        return (1, value.lower())
    if isinstance(value, datetime):
        return (1, value.timestamp())
    return (1, value)


_CACHES = ("_cell_render_cache", "_row_render_cache", "_row_renderable_cache", "_line_cache")
_PRIVATE = ("_data", "_row_locations", "_column_locations", "_y_offsets", "_update_count", *_CACHES)


def _local_invalidation(table: DataTable[Any]) -> bool:
    """Whether `table` has the private DataTable attributes that `NodeTable.update_cell` relies on."""
    if not all(hasattr(table, name) for name in _PRIVATE):
        return False
    caches = [getattr(table, name) for name in _CACHES]
    return all(callable(getattr(c, "keys", None)) and callable(getattr(c, "discard", None)) for c in caches)


class NodeTable(DataTable[Cell]):
    """Nodes by id; `upsert`, `remove`, `sort_by`; `clock` gives "now" for the SEEN column."""

    DEFAULT_CSS = """
    NodeTable {
        height: 1fr;
    }
    """

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("enter", "select_cursor", "Open"),
    ]

    _batching = False
    """Inside `batch_cells()`: repaints wait for its end."""
    _deferred = False
    """A repaint was asked for inside `batch_cells()`."""
    _resync_pending = False
    """`_sync_stale` runs again after the next repaint (rows in view were left stale)."""

    def __init__(self, clock: Callable[[], datetime], *, id: str | None = None) -> None:
        super().__init__(id=id, cursor_type="row", zebra_stripes=True)
        self.clock = clock
        self.sort_column = "id"
        self.sort_reverse = False
        self._values: dict[str, dict[str, Any]] = {}
        """Node id → the raw values of its row as they are now."""
        self._shown: dict[str, dict[str, Any]] = {}
        """Node id → the values its row's cells were last written from."""
        self._stale: set[str] = set()
        """Rows whose cells wait to be written: out of view, or in view beyond `ROWS_PER_PAINT`."""
        self._local_invalidation = _local_invalidation(self)
        """Whether `update_cell` inside `batch_cells()` can drop only the changed cells' renders."""
        self._dirty_cells: set[tuple[RowKey, ColumnKey]] = set()
        """Cells updated inside `batch_cells()` whose cached renders are dropped at its end."""

    def on_mount(self) -> None:
        for column in COLUMNS:
            self.add_column(self._label(column), key=column.key, width=column.width)

    def on_resize(self) -> None:
        self._sync_stale()

    def watch_scroll_y(self, old_value: float, new_value: float) -> None:
        super().watch_scroll_y(old_value, new_value)
        self._sync_stale()

    def has_node(self, node_id: str) -> bool:
        return node_id in self._values

    @property
    def node_ids(self) -> list[str]:
        """The ids of the rows, in display order."""
        return [str(row.key.value) for row in self.ordered_rows]

    @property
    def cursor_node(self) -> str | None:
        """The id of the node under the cursor."""
        if not self.row_count:
            return None
        try:
            key = self.coordinate_to_cell_key(Coordinate(self.cursor_row, 0)).row_key
        except Exception:  # an empty or shrinking table
            return None
        return None if key.value is None else str(key.value)

    def refresh(self, *regions: Region, repaint: bool = True, layout: bool = False,
                recompose: bool = False) -> Self:
        """As Widget.refresh; inside `batch_cells()` a plain repaint is done once, at the end."""
        if self._batching and not (regions or layout or recompose):
            self._deferred = True
            return self
        return super().refresh(*regions, repaint=repaint, layout=layout, recompose=recompose)

    @contextmanager
    def batch_cells(self) -> Iterator[None]:
        """Many `update_cell` calls, one repaint (each call would otherwise mark the widget dirty again).

        Cells updated inside are repainted alone (see the module's docstring); anything
        else that asked for a repaint repaints the whole table.
        """
        if self._batching:  # nested: the outer batch repaints
            yield
            return
        self._batching, self._deferred = True, False
        try:
            yield
        finally:
            self._batching = False
            dirty, self._dirty_cells = self._dirty_cells, set()
            if self._deferred:
                self._drop_renders(dirty)
                super().refresh()
            elif dirty:
                self._drop_renders(dirty)
                self._refresh_rows({row for row, _ in dirty})

    def update_cell(self, row_key: RowKey | str, column_key: ColumnKey | str, value: Cell, *,
                    update_width: bool = False) -> None:
        """As DataTable's; inside `batch_cells()` the other cells' cached renders are kept."""
        if not (self._batching and self._local_invalidation) or update_width:
            super().update_cell(row_key, column_key, value, update_width=update_width)
            return
        row_key = RowKey(row_key) if isinstance(row_key, str) else row_key
        column_key = ColumnKey(column_key) if isinstance(column_key, str) else column_key
        if row_key not in self._row_locations or column_key not in self._column_locations:
            raise CellDoesNotExist(f"No cell exists for row_key={row_key!r}, column_key={column_key!r}.")
        self._data[row_key][column_key] = value
        self._dirty_cells.add((row_key, column_key))

    def _drop_renders(self, cells: set[tuple[RowKey, ColumnKey]]) -> None:
        """Forget the cached renders of these cells, of their rows and of their rows' lines."""
        if not cells:
            return
        rows = {row for row, _ in cells}
        indexes = {self._row_locations.get(row) for row in rows}
        offsets = self._y_offsets  # line (below the header) → (row key, line in row)
        header = self.header_height if self.show_header else 0

        def row_of_line(y: int) -> RowKey | None:
            return offsets[y - header][0] if 0 <= y - header < len(offsets) else None

        self._discard(self._cell_render_cache, lambda key: (key[0], key[1]) in cells)
        self._discard(self._row_render_cache, lambda key: key[0] in rows)
        self._discard(self._row_renderable_cache, lambda key: key[1] in indexes)
        self._discard(self._line_cache, lambda key: row_of_line(key[0]) in rows)

    @staticmethod
    def _discard(cache: Any, stale: Callable[[Any], bool]) -> None:
        for key in [key for key in cache.keys() if stale(key)]:
            cache.discard(key)

    def _refresh_rows(self, rows: set[RowKey]) -> None:
        """Repaint the lines of these rows (those in view)."""
        header = self.header_height if self.show_header else 0
        top, width = int(self.scroll_y), self.size.width
        in_view = self._y_offsets[top:top + max(0, self.scrollable_content_region.height - header)]
        regions = [Region(0, header + y, width, 1) for y, (row, _) in enumerate(in_view) if row in rows]
        if regions:
            super().refresh(*regions)

    def upsert(self, nodes: Iterable[dict[str, Any]]) -> tuple[bool, set[str]]:
        """Add new nodes, update the changed cells of known ones: (rows added?, columns changed).

        Changed rows are stale until written by `_sync_stale`: now for rows near the
        view, `ROWS_PER_PAINT` at a time for rows in view; rows out of view (beyond
        `MARGIN`) are written when they scroll into view.
        """
        with self.batch_cells():
            return self._upsert(nodes)

    def _upsert(self, nodes: Iterable[dict[str, Any]]) -> tuple[bool, set[str]]:
        now = self.clock()
        added, changed = False, set[str]()
        for node in nodes:
            values = node_values(node)
            node_id = str(values["id"])
            old = self._values.get(node_id)
            self._values[node_id] = values
            if old is None:
                self.add_row(*node_cells(values, now), key=node_id)
                self._shown[node_id] = values
                added = True
                continue
            changed.update(key for key in COLUMN_KEYS if values[key] != old[key])
            self._stale.add(node_id)
        self._sync_stale()
        return added, changed

    def _window(self) -> tuple[int, int]:
        """The row indexes whose cells are kept current: those in view, and `MARGIN` more each side."""
        top = int(self.scroll_y)
        return top - MARGIN, top + self.scrollable_content_region.height + MARGIN

    def _write(self, node_id: str, now: datetime) -> None:
        """Write the cells of the row whose values changed since they were last written."""
        values, shown = self._values[node_id], self._shown[node_id]
        for key in COLUMN_KEYS:
            if values[key] != shown[key]:
                self.update_cell(node_id, key, cell_text(key, values, now))
        self._shown[node_id] = values
        self._stale.discard(node_id)

    def _sync_stale(self) -> None:
        """Write the stale rows near the view: those out of view, and `ROWS_PER_PAINT` of those in view
        (top first; the rest after the next repaint)."""
        if not self._stale:
            return
        low, high = self._window()
        top = int(self.scroll_y)
        bottom = top + self.scrollable_content_region.height - (self.header_height if self.show_header else 0)
        now = self.clock()
        budget = ROWS_PER_PAINT
        with self.batch_cells():
            for index, row in enumerate(self.ordered_rows[max(0, low):high + 1], start=max(0, low)):
                node_id = str(row.key.value)
                if node_id not in self._stale:
                    continue
                if top <= index < bottom:
                    if not budget:
                        self._resync_after_refresh()
                        continue
                    budget -= 1
                self._write(node_id, now)

    def _resync_after_refresh(self) -> None:
        if not self._resync_pending:
            self._resync_pending = True
            self.call_after_refresh(self._resync)

    def _resync(self) -> None:
        self._resync_pending = False
        if self.is_attached:
            self._sync_stale()

    def remove_nodes(self, node_ids: Iterable[str]) -> None:
        """Remove the rows of these nodes (ids without a row are ignored)."""
        for node_id in node_ids:
            if self._values.pop(node_id, None) is not None:
                self._shown.pop(node_id, None)
                self._stale.discard(node_id)
                try:
                    self.remove_row(node_id)
                except RowDoesNotExist:
                    pass
        self._sync_stale()

    def refresh_ages(self) -> None:
        """Recompute the SEEN column against the clock (only cells whose text changed)."""
        now = self.clock()
        with self.batch_cells():
            for node_id, values in self._shown.items():
                if values["seen"] not in (None, SEEN_NOW):
                    self.update_cell(node_id, "seen", cell_text("seen", values, now))

    def sort_by(self, column: str, reverse: bool | None = None) -> None:
        """Sort by `column` (same column again: reverse); the cursor stays on its node."""
        if reverse is None:
            reverse = not self.sort_reverse if column == self.sort_column else False
        previous = self.sort_column
        self.sort_column, self.sort_reverse = column, reverse
        self._relabel({previous, column})
        self.resort()

    def resort(self) -> None:
        """Put the rows back in the current order, keeping the cursor on its node."""
        node = self.cursor_node
        values = self._values
        column = self.sort_column

        def key(node_id: Any) -> tuple[SortValue, str]:
            return (_sort_value(values[str(node_id)][column]), str(node_id))

        self.sort("id", key=key, reverse=self.sort_reverse)
        self.keep_cursor_on(node)
        self._sync_stale()

    def keep_cursor_on(self, node_id: str | None) -> None:
        """Move the cursor to `node_id`'s row, wherever it is now."""
        if node_id is None or node_id not in self._values:
            return
        row = self.get_row_index(node_id)
        if row != self.cursor_row:
            self.move_cursor(row=row, animate=False)

    def _label(self, column: Column) -> Text:
        arrow = ("▼" if self.sort_reverse else "▲") if column.key == self.sort_column else ""
        return Text(column.label + arrow, style="bold")

    def _relabel(self, keys: set[str]) -> None:
        for column in COLUMNS:
            if column.key in keys and column.key in self.columns:
                self.columns[column.key].label = self._label(column)  # type: ignore[index]
        self.refresh()
