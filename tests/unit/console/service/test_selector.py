"""Label selectors: every form parses, mistakes name their column, matching follows Kubernetes."""

from __future__ import annotations

import pytest

from console.errors import InvalidInput
from console.service.selector import Op, Requirement, Selector

R = Requirement


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("region=eu", [R("region", Op.EQ, ("eu",))]),
        ("region==eu", [R("region", Op.EQ, ("eu",))]),
        ("rack!=r3", [R("rack", Op.NE, ("r3",))]),
        ("gpu", [R("gpu", Op.EXISTS)]),
        ("!spot", [R("spot", Op.NOT_EXISTS)]),
        ("tier in (a,b)", [R("tier", Op.IN, ("a", "b"))]),
        ("tier in(gold)", [R("tier", Op.IN, ("gold",))]),
        ("x notin (y)", [R("x", Op.NOT_IN, ("y",))]),
        ("x notin (y,z)", [R("x", Op.NOT_IN, ("y", "z"))]),
        ("a=", [R("a", Op.EQ, ("",))]),  # an empty value is a value
        ("example.com/role=db", [R("example.com/role", Op.EQ, ("db",))]),
        ("k.1_2-3=v.1_2-3", [R("k.1_2-3", Op.EQ, ("v.1_2-3",))]),
        ("in", [R("in", Op.EXISTS)]),  # operator words are keys where a key is expected
        (
            "region=eu,rack!=r3,gpu,!spot,tier in (gold,silver)",
            [
                R("region", Op.EQ, ("eu",)),
                R("rack", Op.NE, ("r3",)),
                R("gpu", Op.EXISTS),
                R("spot", Op.NOT_EXISTS),
                R("tier", Op.IN, ("gold", "silver")),
            ],
        ),
    ],
)
def test_parse_reads_every_form(text: str, expected: list[Requirement]) -> None:
    assert Selector.parse(text).requirements == tuple(expected)


@pytest.mark.parametrize(
    "text",
    [
        "region=eu,tier in (a,b),!spot,gpu",
        "  region = eu ,  tier  in  ( a , b ) , ! spot , gpu  ",
        "region== eu,tier in(a ,b),!spot ,gpu",
    ],
)
def test_spaces_around_tokens_are_ignored(text: str) -> None:
    sel = Selector.parse(text)

    assert sel.requirements == (
        R("region", Op.EQ, ("eu",)),
        R("tier", Op.IN, ("a", "b")),
        R("spot", Op.NOT_EXISTS),
        R("gpu", Op.EXISTS),
    )
    assert str(sel) == "region=eu,tier in (a,b),!spot,gpu"


@pytest.mark.parametrize("text", [None, "", "   "])
def test_an_empty_selector_matches_everything(text: str | None) -> None:
    sel = Selector.parse(text)

    assert not sel
    assert sel.matches({})
    assert sel.matches({"a": "b"})
    assert str(sel) == ""


@pytest.mark.parametrize(
    ("text", "column", "problem"),
    [
        ("a,,b", 3, "expected a label key"),
        ("a foo", 3, "unknown operator 'foo'"),
        ("a in (", 7, "expected"),
        ("a in (x", 8, "expected ','"),
        ("a in", 5, "expected '('"),
        ("=x", 1, "expected a label key"),
        ("a=b c", 5, "expected ',' between requirements"),
        ("!", 2, "expected a label key"),
        ("!=x", 1, "expected a label key"),
        ("a,", 3, "expected a label key"),
        ("a=b=c", 4, "expected ','"),
        ("a=-b", 3, "expected ','"),
        ("-a", 1, "expected a label key"),
        ("a IN (b)", 3, "expected ','"),
        ("a=" + "v" * 129, 3, "longer than 128"),
        ("k" * 129, 1, "longer than 128"),
    ],
)
def test_mistakes_name_the_column(text: str, column: int, problem: str) -> None:
    with pytest.raises(InvalidInput) as info:
        Selector.parse(text)

    message = str(info.value)
    assert f"column {column}:" in message
    assert problem in message
    assert repr(text) in message
    assert info.value.code == "invalid_input"


def test_the_longest_key_and_value_are_accepted() -> None:
    key, value = "k" * 128, "v" * 128

    assert Selector.parse(f"{key}={value}").requirements == (R(key, Op.EQ, (value,)),)


LABELS = {"region": "eu", "rack": "r1", "gpu": "", "tier": "gold"}


@pytest.mark.parametrize(
    ("text", "labels", "matches"),
    [
        ("region=eu", LABELS, True),
        ("region=us", LABELS, False),
        ("zone=a", LABELS, False),  # = needs the label
        ("rack!=r3", LABELS, True),
        ("rack!=r1", LABELS, False),
        ("zone!=a", LABELS, True),  # != matches a missing label
        ("zone!=a", {}, True),
        ("gpu", LABELS, True),  # exists, even with an empty value
        ("gpu=", LABELS, True),
        ("spot", LABELS, False),
        ("!spot", LABELS, True),
        ("!gpu", LABELS, False),
        ("tier in (gold,silver)", LABELS, True),
        ("tier in (silver)", LABELS, False),
        ("zone in (a)", LABELS, False),  # in needs the label
        ("tier notin (silver)", LABELS, True),
        ("tier notin (gold,silver)", LABELS, False),
        ("zone notin (a)", LABELS, True),  # notin matches a missing label
        ("region=eu,rack!=r3,gpu,!spot,tier in (gold)", LABELS, True),
        ("region=eu,rack!=r1", LABELS, False),  # every requirement must hold
        ("region=EU", LABELS, False),  # values are case-sensitive
    ],
)
def test_matching(text: str, labels: dict[str, str], matches: bool) -> None:
    assert Selector.parse(text).matches(labels) is matches


@pytest.mark.parametrize(
    "text",
    ["region=eu", "rack!=r3", "gpu", "!spot", "tier in (a,b)", "x notin (y)", "a=", "a=b,!c,d in (e),f"],
)
def test_str_prints_a_selector_that_parses_back_to_itself(text: str) -> None:
    sel = Selector.parse(text)

    assert str(sel) == text
    assert Selector.parse(str(sel)) == sel
