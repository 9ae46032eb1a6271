"""LogView: a live log, history first, then the tail; pause, wrap, search, level filter, older on scroll.

    LogView(streams=[{"run_id": run.id}])                 # one stream
    LogView(streams=[{"node_id": n}, {"instance_id": i}])  # several, merged by time

Keys: `space` pause/resume (paused: new lines are counted, "+N new"), `w` wrap, `/` search (matches
highlighted; `n`/`N` next/previous), `L` level (debug → info → warning → error), `end` back to the
newest line. Memory is bounded: the view keeps at most `max_lines` lines; scrolling to the top asks
the hub for the lines before the oldest (`query_logs(until=oldest)`). Lines the hub left out of the
tail because this reader was slow are counted and shown.
"""

from __future__ import annotations

from collections import deque
from collections.abc import AsyncIterator
from typing import Any, ClassVar, TypedDict

from rich.markup import escape
from textual import on, work
from textual.actions import SkipAction
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical
from textual.widgets import Input, Static

from console.tui.client import HubUnavailableError
from console.tui.support import hub
from console.tui.widgets.log_lines import LEVELS, LogLine, LogLines

__all__ = ["LogView"]


class _Ids(TypedDict):
    node_id: str
    run_id: str
    instance_id: str


def _ids(stream: dict[str, str]) -> _Ids:
    """The ids of a stream as keyword arguments of `query_logs` / `tail_logs`."""
    return {"node_id": stream.get("node_id", ""), "run_id": stream.get("run_id", ""),
            "instance_id": stream.get("instance_id", "")}


class LogView(Vertical):
    """A log that follows one or several streams (node, run, instance) merged by time."""

    DEFAULT_CSS = """
    LogView {
        height: 1fr;
        & > #log-status { height: 1; background: $panel; color: $text-muted; padding: 0 1; }
        & > #log-search { display: none; }
        & > #log-search.-open { display: block; }
    }
    """

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("space", "toggle_pause", "Pause/resume"),
        Binding("w", "toggle_wrap", "Wrap"),
        Binding("slash", "search", "Search"),
        Binding("n", "next_match", "Next match"),
        Binding("N", "previous_match", "Previous match"),
        Binding("L", "cycle_level", "Level"),
        Binding("end", "follow", "Newest", show=False),
        Binding("escape", "close_search", "Close search", show=False),
    ]

    def __init__(
        self,
        streams: list[dict[str, str]] | None = None,
        *,
        max_lines: int = 5000,
        history: int = 1000,
        id: str | None = None,
        classes: str | None = None,
    ) -> None:
        super().__init__(id=id, classes=classes)
        self.streams = streams or [{}]
        """Each a filter (`node_id`, `run_id`, `instance_id`) with its own history and tail."""
        self.max_lines = max_lines
        self.history = history
        """Lines of history fetched per stream before the tail."""
        self.paused = False
        self.new_lines = 0
        """Lines that arrived while paused."""
        self.dropped = 0
        """Lines the hub left out of the tail (this reader was slow)."""
        self._pending: deque[LogLine] = deque(maxlen=max_lines)
        self._fetching_older = False
        self._no_older = False

    def compose(self) -> ComposeResult:
        yield Static(id="log-status")
        yield LogLines(self.max_lines, id="log-lines")
        yield Input(placeholder="search (enter: find, esc: close)", id="log-search")

    def on_mount(self) -> None:
        self._show_status()
        for stream in self.streams:
            self._load_history(stream)
            self._tail(stream)

    @property
    def log_lines(self) -> LogLines:
        return self.query_one(LogLines)

    # --- workers ---------------------------------------------------------------

    @work(group="log-history")
    async def _load_history(self, stream: dict[str, str]) -> None:
        try:
            entries = await (await hub(self)).query_logs(**_ids(stream), limit=self.history)
        except HubUnavailableError as exc:
            self.notify(exc.message, title="logs", severity="error")
            return
        self.log_lines.add(LogLine.from_entry(entry) for entry in entries)
        self._show_status()

    @work(group="log-tail")
    async def _tail(self, stream: dict[str, str]) -> None:
        live = False
        try:
            batches: AsyncIterator[tuple[list[dict[str, Any]], int]] = (await hub(self)).tail_logs(**_ids(stream))
            async for entries, dropped in batches:
                self.dropped += dropped
                self._receive([LogLine.from_entry(entry) for entry in entries])
                if not live:  # the tail is live: what came before it (both answers overlap; merged)
                    live = True
                    self._load_history(stream)
        except HubUnavailableError as exc:
            self.notify(exc.message, title="log tail", severity="error")

    @work(group="log-older", exclusive=True)
    async def _load_older(self) -> None:
        oldest = self.log_lines.oldest
        if oldest is None:
            return
        self._fetching_older = True
        try:
            client = await hub(self)
            found = 0
            for stream in self.streams:
                entries = await client.query_logs(**_ids(stream), until=oldest.at,
                                                  limit=self.history)
                found += self.log_lines.add_older(LogLine.from_entry(entry) for entry in entries)
            self._no_older = found == 0
            if self.log_lines.trimmed_newest and not self.paused:
                self._set_paused(True)
        except HubUnavailableError as exc:
            self.notify(exc.message, title="older logs", severity="error")
        finally:
            self._fetching_older = False
            self._show_status()

    def _receive(self, lines: list[LogLine]) -> None:
        if not lines:
            return
        if self.paused:
            self._pending.extend(lines)
            self.new_lines += len(lines)
        else:
            self.log_lines.add(lines)
        self._show_status()

    # --- handlers --------------------------------------------------------------

    @on(LogLines.ReachedTop)
    def _reached_top(self) -> None:
        if not self._fetching_older and not self._no_older:
            self._load_older()

    @on(Input.Submitted, "#log-search")
    def _search(self, event: Input.Submitted) -> None:
        event.stop()
        self.log_lines.set_pattern(event.value.strip())
        if event.value.strip():
            self.log_lines.next_match(-1)
        self._close_search()

    def _close_search(self) -> None:
        self.query_one("#log-search", Input).remove_class("-open")
        self.log_lines.focus()
        self._show_status()

    # --- actions ---------------------------------------------------------------

    def action_toggle_pause(self) -> None:
        """Pause (count new lines) or resume (show them and follow again)."""
        self._set_paused(not self.paused)

    def action_follow(self) -> None:
        """Resume and go to the newest line."""
        self._set_paused(False)
        self.log_lines.scroll_end(animate=False)

    def action_toggle_wrap(self) -> None:
        self.log_lines.set_wrap(not self.log_lines.wrap)
        self._show_status()

    def action_search(self) -> None:
        search = self.query_one("#log-search", Input)
        search.add_class("-open")
        search.value = self.log_lines.pattern
        search.focus()

    def action_close_search(self) -> None:
        """Esc closes the search box; otherwise the screen's Esc applies."""
        if not self.query_one("#log-search", Input).has_class("-open"):
            raise SkipAction()
        self._close_search()

    def action_next_match(self) -> None:
        self._move_match(+1)

    def action_previous_match(self) -> None:
        self._move_match(-1)

    def action_cycle_level(self) -> None:
        lines = self.log_lines
        lines.set_level(LEVELS[(LEVELS.index(lines.level) + 1) % len(LEVELS)])
        self._show_status()

    def _move_match(self, step: int) -> None:
        if self.log_lines.next_match(step) < 0:
            self.notify("no matches" if self.log_lines.pattern else "search first with /", severity="warning")
        self._show_status()

    def _set_paused(self, paused: bool) -> None:
        self.paused = paused
        lines = self.log_lines
        lines.follow = not paused
        if not paused:
            pending, self.new_lines = list(self._pending), 0
            self._pending.clear()
            if lines.trimmed_newest:
                lines.clear()
                self._no_older = False
                for stream in self.streams:
                    self._load_history(stream)
            lines.add(pending)
            lines.scroll_end(animate=False)
        self._show_status()

    def _show_status(self) -> None:
        lines = self.log_lines
        parts = [f"[b yellow]paused +{self.new_lines} new[/]" if self.paused else "[b green]following[/]",
                 f"{len(lines.lines)} lines", f"level ≥ {lines.level}", "wrap" if lines.wrap else "no wrap"]
        if lines.pattern:
            parts.append(f"/{escape(lines.pattern)}: {lines.matches} matches")
        if self.dropped:
            parts.append(f"[red]{self.dropped} dropped[/]")
        if self._fetching_older:
            parts.append("loading older…")
        self.query_one("#log-status", Static).update(" · ".join(parts))
