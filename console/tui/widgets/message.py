"""A modal that shows something once (an agent token) until the operator closes it."""

from __future__ import annotations

from typing import ClassVar

from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Label, Static

__all__ = ["MessageScreen"]


class MessageScreen(ModalScreen[None]):
    """Title, explanation and a value to copy; `c` copies it to the clipboard, enter / escape close."""

    DEFAULT_CSS = """
    MessageScreen {
        align: center middle;
    }
    MessageScreen > Vertical {
        width: 80;
        height: auto;
        border: thick $warning;
        background: $surface;
        padding: 1 2;
    }
    MessageScreen .title {
        text-style: bold;
    }
    MessageScreen .value {
        margin: 1 0;
        padding: 0 1;
        background: $boost;
        text-style: bold;
    }
    MessageScreen .hint {
        color: $text-muted;
    }
    """

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("c", "copy", "Copy"),
        Binding("enter", "close", "Close"),
        Binding("escape", "close", "Close", show=False),
    ]

    def __init__(self, title: str, message: str, value: str = "") -> None:
        super().__init__()
        self._title = title
        self._message = message
        self.value = value

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Label(self._title, classes="title")
            yield Static(self._message)
            if self.value:
                yield Static(self.value, classes="value", markup=False)
            yield Static("c: copy · enter: close", classes="hint")

    def action_copy(self) -> None:
        """Copy the value to the clipboard (through the terminal)."""
        self.app.copy_to_clipboard(self.value)
        self.notify("copied")

    def action_close(self) -> None:
        """Close it."""
        self.dismiss(None)
