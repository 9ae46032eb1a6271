"""StepProgress: one pipeline step as a line: name, progress bar, state (coloured), elapsed time, message.

    bar = StepProgress(step)          # a step as the client gives it (name, state, progress, message, times)
    bar.step = newer_step             # update from a WatchRun event
    bar.tick(now)                     # refresh the elapsed time (the run screen's 1 s timer)
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from rich.markup import escape
from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Horizontal
from textual.reactive import reactive
from textual.widgets import Label, ProgressBar

from console.tui.support import as_datetime, duration, state_name, state_style

__all__ = ["StepProgress"]


class StepProgress(Horizontal):
    """The live line of one step of a run."""

    DEFAULT_CSS = """
    StepProgress {
        height: 1;
        & > .step-name { width: 24; text-overflow: ellipsis; }
        & > ProgressBar { width: 36; }
        & > .step-state { width: 11; }
        & > .step-elapsed { width: 8; text-align: right; margin-right: 1; color: $text-muted; }
        & > .step-message { width: 1fr; text-overflow: ellipsis; color: $text-muted; }
        &.-cleanup > .step-name { color: $warning; }
    }
    """

    step: reactive[dict[str, Any]] = reactive(dict, always_update=True, init=False)
    """The step as the client gives it."""

    def __init__(self, step: dict[str, Any], *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.set_reactive(StepProgress.step, step)
        self.now: datetime | None = None
        """The time elapsed time is counted to while the step runs (set by `tick`)."""
        self._ready = False

    def watch_step(self) -> None:
        self._show()

    def compose(self) -> ComposeResult:
        yield Label(classes="step-name")
        yield ProgressBar(total=100, show_eta=False, show_percentage=True)
        yield Label(classes="step-state")
        yield Label(classes="step-elapsed")
        yield Label(classes="step-message")

    def on_mount(self) -> None:
        self._ready = True
        self._show()

    @property
    def state(self) -> str:
        return state_name(self.step.get("state"))

    @property
    def progress(self) -> float:
        """The bar's percentage (a succeeded step is full)."""
        if self.state == "succeeded":
            return 100.0
        return float(max(0, min(int(self.step.get("progress") or 0), 100)))

    def elapsed(self) -> float | None:
        """Seconds the step ran (until now while it runs), or None before it started."""
        started = as_datetime(self.step.get("started_at"))
        if started is None:
            return None
        ended = as_datetime(self.step.get("finished_at")) or self.now
        return (ended - started).total_seconds() if ended is not None else 0.0

    def tick(self, now: datetime) -> None:
        """Show the elapsed time up to `now`."""
        self.now = now
        if self._ready:
            self._show_elapsed()

    def _show(self) -> None:
        if not self._ready:
            return
        step, state = self.step, self.state
        self.set_class(bool(step.get("cleanup")), "-cleanup")
        name = escape(str(step.get("name", "")))
        attempt = int(step.get("attempt") or 0)
        retry = f" [dim](try {attempt})[/]" if attempt > 1 else ""
        self.query_one(".step-name", Label).update(f"{name}{retry}")
        self.query_one(ProgressBar).update(progress=self.progress)
        self.query_one(".step-state", Label).update(Text(state or "-", style=state_style(state)))
        self.query_one(".step-message", Label).update(escape(str(step.get("message") or "")))
        self._show_elapsed()

    def _show_elapsed(self) -> None:
        seconds = self.elapsed()
        self.query_one(".step-elapsed", Label).update("" if seconds is None else duration(seconds))
