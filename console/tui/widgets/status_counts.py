"""The fleet screen's header line: how many nodes in each status, and how many are shown."""

from __future__ import annotations

from collections import Counter

from rich.text import Text
from textual.widgets import Static

from console.tui.fmt import STATUS_STYLES

__all__ = ["StatusCounts"]

ORDER = ("online", "ready", "maintenance", "offline")


class StatusCounts(Static):
    """`● online 3  ● ready 1  ● maintenance 1  ● offline 2   7 of 7 shown`; redrawn only when a number changes."""

    DEFAULT_CSS = """
    StatusCounts {
        height: 1;
        padding: 0 1;
        background: $boost;
    }
    """

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__("", id=id)
        self._state: tuple[tuple[tuple[str, int], ...], int, int, str] | None = None

    def show_counts(self, counts: Counter[str], shown: int, total: int, filter_text: str = "") -> None:
        """Show these numbers (a no-op when nothing changed)."""
        state = (tuple(sorted(counts.items())), shown, total, filter_text)
        if state == self._state:
            return
        self._state = state
        self.update(self._render_counts(counts, shown, total, filter_text))

    @staticmethod
    def _render_counts(counts: Counter[str], shown: int, total: int, filter_text: str) -> Text:
        text = Text()
        others = sorted(set(counts) - set(ORDER))
        for status in (*ORDER, *others):
            style = STATUS_STYLES.get(status, "dim")
            text.append("● ", style=style).append(f"{status} ").append(str(counts.get(status, 0)), style="bold")
            text.append("   ")
        text.append(f"{shown} of {total} shown", style="dim")
        if filter_text:
            text.append("  filter: ", style="dim").append(filter_text, style="bold cyan")
        return text
