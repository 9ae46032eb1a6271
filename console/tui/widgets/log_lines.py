"""LogLines: the Line API view of a bounded, time-ordered ring of log lines.

    lines = LogLines(max_lines=5000)
    lines.add(LogLine.from_entry(e) for e in entries)      # merged by time, duplicates dropped
    lines.add_older(older)                                  # before the oldest; trims the newest when full
    lines.level, lines.wrap, lines.pattern                  # filter, wrap, search (matches highlighted)
    lines.next_match(+1)                                    # scroll to the next / previous match

The ring never holds more than `max_lines` lines; the view (lines at or above `level`) and the
wrapped rows are rebuilt lazily, once per batch of changes, and only the rows on screen are rendered.
"""

from __future__ import annotations

import bisect
import re
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from rich.cells import cell_len
from rich.style import Style
from rich.text import Text
from textual.cache import LRUCache
from textual.geometry import Size
from textual.message import Message
from textual.scroll_view import ScrollView
from textual.strip import Strip

from console.tui.support import as_datetime

__all__ = ["LEVELS", "LogLine", "LogLines"]

LEVELS = ("debug", "info", "warning", "error")
"""Levels from the lowest; a filter shows its level and those above."""
_LEVEL_ALIASES = {"warn": "warning", "err": "error", "critical": "error", "fatal": "error", "": "info"}
_LEVEL_STYLES = {"debug": "dim", "info": "", "warning": "yellow", "error": "bold red"}
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")
_EPOCH = datetime.fromtimestamp(0, UTC)
MATCH_STYLE = Style(color="black", bgcolor="yellow")
"""How a search match is shown."""
CURRENT_MATCH_STYLE = Style(color="black", bgcolor="bright_magenta", bold=True)
"""How the match `n`/`N` moved to is shown."""


def level_rank(level: str) -> int:
    """The position of `level` in LEVELS (unknown levels count as info)."""
    name = _LEVEL_ALIASES.get(level.lower(), level.lower())
    return LEVELS.index(name) if name in LEVELS else 1


@dataclass(frozen=True, eq=False)
class LogLine:
    """One log line as shown: its time, where it came from and its text (identity equality, hashable)."""

    at: datetime
    node_id: str
    source: str
    level: str
    stream: str
    text: str
    plain: str = field(default="", repr=False)
    """The whole line as shown (time, node, source, level, text)."""
    prefix: int = 0
    """Characters of `plain` before the level."""
    width: int = 0

    @classmethod
    def from_entry(cls, entry: dict[str, Any]) -> LogLine:
        """A line from a client log entry (`at`, `node_id`, `source`, `level`, `stream`, `text`)."""
        at = as_datetime(entry.get("at")) or _EPOCH
        level = _LEVEL_ALIASES.get(str(entry.get("level", "")).lower(), str(entry.get("level", "")).lower())
        text = _CONTROL.sub("?", str(entry.get("text", "")).expandtabs(4).rstrip("\n"))
        node, source = str(entry.get("node_id", "")), str(entry.get("source", ""))
        head = f"{at.astimezone(UTC):%H:%M:%S.%f}"[:12] + f" {node} {source} "
        plain = f"{head}{level.upper()[:5]:<5} {text}"
        return cls(at, node, source, level, str(entry.get("stream", "")), text, plain, len(head), cell_len(plain))

    @property
    def key(self) -> tuple[datetime, str, str, str, str]:
        """What makes two lines the same line (history and tail overlap)."""
        return (self.at, self.node_id, self.source, self.stream, self.text)


class LogLines(ScrollView, can_focus=True):
    """A scrollable, bounded, filterable, searchable view of log lines."""

    DEFAULT_CSS = """
    LogLines {
        background: $surface;
        color: $text;
        overflow: auto auto;
        height: 1fr;
        &:focus { background-tint: $foreground 5%; }
    }
    """

    class ReachedTop(Message):
        """The view was scrolled to its first row: older lines may be fetched."""

    def __init__(self, max_lines: int = 5000, *, id: str | None = None, classes: str | None = None) -> None:
        super().__init__(id=id, classes=classes)
        self.max_lines = max(max_lines, 1)
        self.level = "debug"
        """The lowest level shown."""
        self.wrap = False
        self.pattern = ""
        """Text searched for (case-insensitive); its matches are highlighted."""
        self.follow = True
        """Scroll to the newest line when lines are added while the view is at the end."""
        self.trimmed_newest = False
        """Newest lines were dropped to make room for older ones."""
        self._ring: deque[LogLine] = deque()
        self._keys: set[tuple[datetime, str, str, str, str]] = set()
        self._view: list[LogLine] = []
        self._starts: list[int] = []
        self._matches: list[int] = []
        self._current = -1
        self._dirty = True
        self._cache: LRUCache[LogLine, Strip] = LRUCache(1024)

    # --- what it holds ---------------------------------------------------------

    @property
    def lines(self) -> list[LogLine]:
        """Every line in the ring, oldest first."""
        return list(self._ring)

    @property
    def view(self) -> list[LogLine]:
        """The lines shown (the level filter applied), oldest first."""
        self._ensure_view()
        return self._view

    @property
    def oldest(self) -> LogLine | None:
        return self._ring[0] if self._ring else None

    @property
    def matches(self) -> int:
        """How many shown lines match the search."""
        self._ensure_view()
        return len(self._matches)

    @property
    def current_match(self) -> int:
        """The view index of the match moved to last, or -1."""
        return self._matches[self._current] if 0 <= self._current < len(self._matches) else -1

    # --- changes ---------------------------------------------------------------

    def add(self, lines: Iterable[LogLine]) -> int:
        """Merge `lines` in by time, dropping duplicates and the oldest beyond `max_lines`; how many were new."""
        at_end = self.is_vertical_scroll_end or not self._view
        added = 0
        for line in lines:
            if line.key in self._keys:
                continue
            self._insert(line)
            added += 1
            while len(self._ring) > self.max_lines:
                self._keys.discard(self._ring.popleft().key)
        if added:
            self._changed(scroll_end=self.follow and at_end)
        return added

    def add_older(self, lines: Iterable[LogLine]) -> int:
        """Merge in lines older than what is shown; when full, the newest lines make room (`trimmed_newest`)."""
        rows_before = self.virtual_size.height
        added = 0
        for line in lines:
            if line.key not in self._keys:
                self._insert(line)
                added += 1
        while len(self._ring) > self.max_lines:
            self._keys.discard(self._ring.pop().key)
            self.trimmed_newest = True
        if added:
            self._changed(scroll_end=False)
            self.scroll_to(y=self.scroll_y + max(self.virtual_size.height - rows_before, 0), animate=False,
                           immediate=True)
        return added

    def clear(self) -> None:
        """Forget every line."""
        self._ring.clear()
        self._keys.clear()
        self.trimmed_newest = False
        self._changed(scroll_end=True)

    def set_level(self, level: str) -> None:
        """Show `level` and the levels above it."""
        self.level = level
        self._changed(scroll_end=self.follow and self.is_vertical_scroll_end)

    def set_wrap(self, wrap: bool) -> None:
        """Wrap long lines (else scroll sideways)."""
        self.wrap = wrap
        self._changed(scroll_end=self.follow and self.is_vertical_scroll_end)

    def set_pattern(self, pattern: str) -> None:
        """Highlight `pattern` (case-insensitive); the current match is reset."""
        self.pattern = pattern
        self._current = -1
        self._changed(scroll_end=False)

    def next_match(self, step: int) -> int:
        """Move `step` matches down (+1) or up (-1) and scroll to it; its view index, or -1 without matches."""
        self._ensure_view()
        if not self._matches:
            return -1
        if self._current < 0:
            self._current = len(self._matches) - 1 if step < 0 else self._first_match_below_top()
        else:
            self._current = (self._current + step) % len(self._matches)
        self._cache.clear()
        index = self._matches[self._current]
        row = self._starts[index] if self.wrap else index
        self.scroll_to(y=max(row - self.scrollable_content_region.height // 2, 0), animate=False, immediate=True)
        self.refresh()
        return index

    def _first_match_below_top(self) -> int:
        top = self.scroll_offset.y
        rows = self._starts if self.wrap else list(range(len(self._view)))
        return next((n for n, index in enumerate(self._matches) if rows[index] >= top), 0)

    def _insert(self, line: LogLine) -> None:
        self._keys.add(line.key)
        if not self._ring or self._ring[-1].at <= line.at:
            self._ring.append(line)
        elif line.at < self._ring[0].at:
            self._ring.appendleft(line)
        else:
            self._ring.insert(bisect.bisect_right(self._ring, line.at, key=lambda item: item.at), line)

    def _changed(self, scroll_end: bool) -> None:
        self._dirty = True
        self._cache.clear()
        self._ensure_view()
        if scroll_end:
            self.scroll_end(animate=False, x_axis=False)
        self.refresh()

    # --- the view --------------------------------------------------------------

    def _ensure_view(self) -> None:
        if not self._dirty:
            return
        self._dirty = False
        rank = level_rank(self.level)
        self._view = [line for line in self._ring if level_rank(line.level) >= rank]
        needle = self.pattern.lower()
        self._matches = [n for n, line in enumerate(self._view) if needle in line.text.lower()] if needle else []
        if self._current >= len(self._matches):
            self._current = -1
        self._layout()

    def _layout(self) -> None:
        width = max(self.scrollable_content_region.width, 1)
        if self.wrap:
            self._starts, row = [], 0
            for line in self._view:
                self._starts.append(row)
                row += max(-(-line.width // width), 1)
            self.virtual_size = Size(width, row)
        else:
            self._starts = []
            widest = max((line.width for line in self._view), default=0)
            self.virtual_size = Size(widest, len(self._view))

    def on_resize(self) -> None:
        if self.wrap:
            self._dirty = True
            self._cache.clear()
            self._ensure_view()

    def watch_scroll_y(self, old_value: float, new_value: float) -> None:
        super().watch_scroll_y(old_value, new_value)
        if new_value <= 0 < old_value and self._ring:
            self.post_message(self.ReachedTop())

    # --- rendering -------------------------------------------------------------

    def render_line(self, y: int) -> Strip:
        self._ensure_view()
        scroll_x, scroll_y = self.scroll_offset
        width = self.scrollable_content_region.width
        row = scroll_y + y
        style = self.rich_style
        if self.wrap:
            index = bisect.bisect_right(self._starts, row) - 1
            if not 0 <= index < len(self._view):
                return Strip.blank(width, style)
            start = (row - self._starts[index]) * width
            return self._strip(index).crop_extend(start, start + width, style)
        if row >= len(self._view):
            return Strip.blank(width, style)
        return self._strip(row).crop_extend(scroll_x, scroll_x + width, style)

    def _strip(self, index: int) -> Strip:
        line = self._view[index]
        cached = self._cache.get(line)
        if cached is not None:
            return cached
        text = Text(line.plain, style=self.rich_style, no_wrap=True, end="")
        level_end = line.prefix + 5
        text.stylize(Style.parse(_LEVEL_STYLES.get(line.level, "") or "none"), line.prefix, level_end)
        if self.pattern:
            current = index == self.current_match
            self._highlight(text, line, CURRENT_MATCH_STYLE if current else MATCH_STYLE)
        strip = Strip(text.render(self.app.console), line.width)
        self._cache[line] = strip
        return strip

    def _highlight(self, text: Text, line: LogLine, style: Style) -> None:
        offset = len(line.plain) - len(line.text)
        lowered, needle = line.text.lower(), self.pattern.lower()
        start = lowered.find(needle)
        while start >= 0 and needle:
            text.stylize(style, offset + start, offset + start + len(needle))
            start = lowered.find(needle, start + len(needle))
