"""Sorting and paging shared by every list query."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from console.errors import InvalidInput
from console.service.query import Page, paginate, sort_records

ALLOWED = frozenset({"id", "name", "rank"})


@dataclass
class Row:
    id: str
    name: str
    rank: int | None


ROWS = [Row("c", "x", 2), Row("a", "y", None), Row("d", "x", 1), Row("b", "y", 3)]


def ids(rows: list[Row]) -> list[str]:
    return [r.id for r in rows]


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("id", ["a", "b", "c", "d"]),
        ("-id", ["d", "c", "b", "a"]),
        ("", ["a", "b", "c", "d"]),  # no spec sorts by id
        (" , ", ["a", "b", "c", "d"]),
        ("name,id", ["c", "d", "a", "b"]),
        ("name,-id", ["d", "c", "b", "a"]),
        ("-name,id", ["a", "b", "c", "d"]),
        (" -name , -id ", ["b", "a", "d", "c"]),
        ("rank", ["a", "d", "c", "b"]),  # None first ascending
        ("-rank", ["b", "c", "d", "a"]),  # and last descending
    ],
)
def test_sort(spec: str, expected: list[str]) -> None:
    assert ids(sort_records(spec, ALLOWED)(ROWS)) == expected


def test_sort_leaves_its_input_alone() -> None:
    rows = list(ROWS)

    sort_records("-id", ALLOWED)(rows)

    assert rows == ROWS


@pytest.mark.parametrize(
    ("spec", "named"), [("colour", "'colour'"), ("name,-colour", "'colour'"), ("-", "''")]
)
def test_an_unknown_sort_field_is_refused_by_name(spec: str, named: str) -> None:
    with pytest.raises(InvalidInput, match=f"unknown field {named}") as info:
        sort_records(spec, ALLOWED)

    assert "id, name, rank" in str(info.value)


@pytest.mark.parametrize(
    ("limit", "offset", "expected"),
    [
        (None, 0, [0, 1, 2, 3, 4]),
        (2, 0, [0, 1]),
        (2, 2, [2, 3]),
        (2, 4, [4]),
        (None, 3, [3, 4]),
        (0, 0, []),
        (3, 10, []),
    ],
)
def test_paginate_cuts_a_page_and_counts_all(limit: int | None, offset: int, expected: list[int]) -> None:
    assert paginate(list(range(5)), limit, offset) == Page(expected, 5)
