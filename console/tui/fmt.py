"""Words and colours for what the console shows: percentages, rates, ages, statuses.

Pure functions of their arguments (the current time is passed in), so the
screens stay deterministic under test.
"""

from __future__ import annotations

from datetime import datetime

from rich.text import Text

__all__ = [
    "STATUS_STYLES",
    "ago",
    "human_bytes",
    "labels_text",
    "percent",
    "rate",
    "status_text",
]

STATUS_STYLES = {
    "online": "green",
    "ready": "bold green",
    "maintenance": "yellow",
    "offline": "red",
}
"""Rich style of each node status (anything else is dim)."""

_UNITS = ("B", "K", "M", "G", "T", "P")


def status_text(status: str) -> Text:
    """The status in its colour."""
    return Text(status or "-", style=STATUS_STYLES.get(status, "dim"))


def percent(value: float | None) -> str:
    """`42.5%`, or `-` when unknown."""
    return "-" if value is None else f"{value:.1f}%"


def human_bytes(value: float | None) -> str:
    """`1.5G`: powers of 1024 with one decimal below 10, `-` when unknown."""
    if value is None:
        return "-"
    size = float(value)
    for unit in _UNITS:
        if abs(size) < 1024 or unit == _UNITS[-1]:
            return f"{size:.1f}{unit}" if size < 10 and unit != "B" else f"{size:.0f}{unit}"
        size /= 1024
    raise AssertionError("unreachable")  # pragma: no cover


def rate(value: float | None) -> str:
    """Bytes per second as `1.5M/s`."""
    return "-" if value is None else human_bytes(value) + "/s"


def ago(when: datetime | None, now: datetime) -> str:
    """`now`, `42s`, `5m`, `3h`, `12d` since `when`; `never` without one."""
    if when is None:
        return "never"
    seconds = int((now - when).total_seconds())
    if seconds < 2:
        return "now"
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def labels_text(labels: dict[str, str]) -> str:
    """`k=v,k2=v2` sorted by key (a label with an empty value shows as its key)."""
    return ",".join(k if not v else f"{k}={v}" for k, v in sorted(labels.items()))
