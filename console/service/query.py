"""Sorting and paging shared by the list queries of every service."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from console.errors import InvalidInput

__all__ = ["Page", "paginate", "sort_records"]

T = TypeVar("T")


@dataclass(frozen=True)
class Page(Generic[T]):
    """One page of a query's answer and how many matched in all."""

    items: list[T]
    total: int


def paginate(items: list[T], limit: int | None, offset: int) -> Page[T]:
    end = None if limit is None else offset + limit
    return Page(items[offset:end], len(items))


def sort_records(spec: str, allowed: frozenset[str]) -> Callable[[list[T]], list[T]]:
    """A sorter for `spec` (`-status,name`); unknown fields are refused by name.

    `None` values sort first ascending (last descending), so a missing
    `last_online` never breaks the comparison. Sorts are stable: give the
    records in id order and ties stay in id order, so pages do not shift.
    """
    fields = [f.strip() for f in spec.split(",") if f.strip()] or ["id"]
    parsed: list[tuple[str, bool]] = []
    for f in fields:
        name = f.removeprefix("-")
        if name not in allowed:
            raise InvalidInput(f"sort: unknown field {name!r} (one of {', '.join(sorted(allowed))})")
        parsed.append((name, f.startswith("-")))

    def sort(items: list[T]) -> list[T]:
        out = list(items)
        for name, descending in reversed(parsed):  # stable sorts, least significant key first
            out.sort(key=lambda r, n=name: _key(getattr(r, n)), reverse=descending)  # type: ignore[misc]
        return out

    return sort


def _key(value: Any) -> tuple[int, Any]:
    return (0, 0) if value is None else (1, value)

