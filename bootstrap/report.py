"""The summary table printed at the end of a rollout: host, from, to, result, time."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from bootstrap.rollout import HostReport

__all__ = ["summary_table"]

_HEAD = ("NODE", "HOST", "FROM", "TO", "RESULT", "TIME")


def _row(report: HostReport) -> tuple[str, ...]:
    result = report.result.value if report.result is not None else "running"
    return (report.node_id, report.host, report.from_version or "-", report.to_version or "-", result,
            f"{report.duration:.1f}s")


def summary_table(reports: Sequence[HostReport]) -> str:
    """A plain-text table, one line per host, the errors of failed hosts below it, and a count line."""
    rows = [_HEAD, *(_row(r) for r in reports)]
    widths = [max(len(row[i]) for row in rows) for i in range(len(_HEAD))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip() for row in rows]
    errors = [f"  {r.node_id}: {r.error}" for r in reports if r.error]
    counts: dict[str, int] = {}
    for row in rows[1:]:
        counts[row[4]] = counts.get(row[4], 0) + 1
    total = ", ".join(f"{n} {name}" for name, n in sorted(counts.items()))
    return "\n".join([*lines, *(["", *errors] if errors else []), "", f"{len(reports)} hosts: {total}"]) + "\n"
