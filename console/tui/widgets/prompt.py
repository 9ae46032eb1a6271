"""A modal asking for one line of text: `PromptScreen(title, ...)` dismisses with it, or None."""

from __future__ import annotations

from typing import ClassVar

from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Input, Label, Static

__all__ = ["PromptScreen"]


class PromptScreen(ModalScreen[str | None]):
    """Enter submits (an empty answer only when not `required`), escape cancels."""

    DEFAULT_CSS = """
    PromptScreen {
        align: center middle;
    }
    PromptScreen > Vertical {
        width: 72;
        height: auto;
        border: thick $accent;
        background: $surface;
        padding: 1 2;
    }
    PromptScreen .title {
        text-style: bold;
    }
    PromptScreen .hint {
        color: $text-muted;
        margin-bottom: 1;
    }
    PromptScreen .error {
        color: $error;
    }
    """

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "cancel", "Cancel"),
    ]

    def __init__(self, title: str, hint: str = "", *, value: str = "", placeholder: str = "",
                 required: bool = True) -> None:
        super().__init__()
        self._title = title
        self._hint = hint
        self._value = value
        self._placeholder = placeholder
        self._required = required

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Label(self._title, classes="title")
            yield Static(self._hint, classes="hint")
            yield Input(self._value, placeholder=self._placeholder)
            yield Static("", classes="error")

    def on_input_submitted(self, event: Input.Submitted) -> None:
        value = event.value.strip()
        if self._required and not value:
            self.query_one(".error", Static).update("an answer is needed (escape cancels)")
            return
        self.dismiss(value)

    def action_cancel(self) -> None:
        """Dismiss without an answer."""
        self.dismiss(None)
