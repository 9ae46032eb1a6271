"""`?`: every key of the screen below and of the app, with what it does."""

from __future__ import annotations

from typing import Any, ClassVar

from textual.app import App, ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical
from textual.screen import ModalScreen, Screen
from textual.widgets import DataTable, Label

__all__ = ["HelpScreen", "KeyHelp"]

KeyHelp = tuple[str, str, str]
"""(key as shown, what it does, where it applies: the screen, a widget or `app`)."""


def _where(node: Any, screen: Screen[Any]) -> str:
    if isinstance(node, App):
        return "app"
    if node is screen:
        return "screen"
    return type(node).__name__


class HelpScreen(ModalScreen[None]):
    """A table of keys; escape, `q` or `?` close it."""

    DEFAULT_CSS = """
    HelpScreen {
        align: center middle;
    }
    HelpScreen > Vertical {
        width: 84;
        height: 80%;
        border: thick $accent;
        background: $surface;
        padding: 0 1;
    }
    HelpScreen .title {
        text-style: bold;
        padding: 1 0;
    }
    HelpScreen DataTable {
        height: 1fr;
    }
    """

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "close", "Close"),
        Binding("q", "close", "Close", show=False),
        Binding("question_mark", "close", "Close", show=False),
    ]

    def __init__(self, title: str, keys: list[KeyHelp]) -> None:
        super().__init__()
        self._title = title
        self.keys = keys

    @classmethod
    def for_screen(cls, screen: Screen[Any]) -> HelpScreen:
        """The help of `screen` as it is now: its keys, its focused widget's and the app's."""
        keys: list[KeyHelp] = []
        for active in screen.active_bindings.values():
            binding: Binding = active.binding
            if not binding.description:
                continue
            key = binding.key_display or screen.app.get_key_display(binding)
            keys.append((key, binding.description, _where(active.node, screen)))
        order = {"screen": 0, "app": 2}
        keys.sort(key=lambda k: (order.get(k[2], 1), k[2], k[0]))
        title = screen.sub_title or screen.title or type(screen).__name__
        return cls(f"Keys: {title}", keys)

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Label(self._title, classes="title")
            yield DataTable(cursor_type="row", zebra_stripes=True)

    def on_mount(self) -> None:
        table = self.query_one(DataTable)
        table.add_columns("KEY", "ACTION", "WHERE")
        for key, description, where in self.keys:
            table.add_row(key, description, where)
        table.focus()

    def action_close(self) -> None:
        """Close the help."""
        self.dismiss(None)
