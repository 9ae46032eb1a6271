"""LogsScreen: the live log of a node, a run or an instance (several given: merged by time), or of all."""

from __future__ import annotations

from typing import ClassVar

from rich.markup import escape
from textual.app import ComposeResult
from textual.binding import BindingType
from textual.screen import Screen
from textual.widgets import Footer, Static

from console.tui.widgets.log_view import LogView

__all__ = ["LogsScreen"]


class LogsScreen(Screen[None]):
    """A full-screen `LogView` (its keys: space, w, /, n, N, L)."""

    DEFAULT_CSS = """
    LogsScreen > #logs-title { height: 1; padding: 0 1; background: $panel; }
    """

    BINDINGS: ClassVar[list[BindingType]] = []

    def __init__(self, node_id: str = "", run_id: str = "", instance_id: str = "", *,
                 max_lines: int = 5000, name: str | None = None, id: str | None = None) -> None:
        super().__init__(name=name, id=id)
        given = {"node_id": node_id, "run_id": run_id, "instance_id": instance_id}
        self.streams = [{key: value} for key, value in given.items() if value] or [{}]
        """One stream per given id (merged by time); none given: every log line of the hub."""
        self.max_lines = max_lines

    def compose(self) -> ComposeResult:
        shown = ", ".join(f"{key.removesuffix('_id')} {value}" for stream in self.streams
                          for key, value in stream.items()) or "every node"
        yield Static(f"[b]logs[/] · {escape(shown)}", id="logs-title")
        yield LogView(self.streams, max_lines=self.max_lines)
        yield Footer()

    def on_mount(self) -> None:
        self.query_one(LogView).log_lines.focus()
