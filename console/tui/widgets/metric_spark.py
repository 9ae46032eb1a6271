"""One metric of a node: its name, its latest value and a sparkline of its history."""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable

from textual.app import ComposeResult
from textual.containers import Horizontal
from textual.widgets import Label, Sparkline

__all__ = ["MetricSpark"]

POINTS = 120
"""Values kept (the history the hub sends, then live samples)."""


class MetricSpark(Horizontal):
    """`CPU  42.0%  ▁▂▅▇█▆▃`; `extend(values)` appends samples."""

    DEFAULT_CSS = """
    MetricSpark {
        height: 1;
    }
    MetricSpark > .metric-name {
        width: 8;
        text-style: bold;
    }
    MetricSpark > .metric-value {
        width: 10;
        text-align: right;
        margin-right: 1;
    }
    MetricSpark > Sparkline {
        width: 1fr;
    }
    """

    def __init__(self, name: str, fmt: Callable[[float], str], *, id: str | None = None) -> None:
        super().__init__(id=id)
        self._metric = name
        self._fmt = fmt
        self.values: deque[float] = deque(maxlen=POINTS)

    def compose(self) -> ComposeResult:
        yield Label(self._metric, classes="metric-name")
        yield Label("-", classes="metric-value")
        yield Sparkline([])

    def extend(self, values: Iterable[float | None]) -> None:
        """Append samples (None: the node did not report this metric) and redraw."""
        known = [v for v in values if v is not None]
        if not known:
            return
        self.values.extend(known)
        self.query_one(".metric-value", Label).update(self._fmt(self.values[-1]))
        self.query_one(Sparkline).data = list(self.values)
