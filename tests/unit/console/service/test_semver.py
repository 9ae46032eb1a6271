"""Semantic versions: parsing, printing and precedence (semver.org 2.0, §11)."""

from __future__ import annotations

import itertools
import random

import pytest

from console.semver import SemVer

# semver.org §11.4, in increasing precedence
SPEC_CHAIN = [
    "1.0.0-alpha",
    "1.0.0-alpha.1",
    "1.0.0-alpha.beta",
    "1.0.0-beta",
    "1.0.0-beta.2",
    "1.0.0-beta.11",
    "1.0.0-rc.1",
    "1.0.0",
]


@pytest.mark.parametrize(
    ("text", "fields", "printed"),
    [
        ("1.2.3", (1, 2, 3, (), ""), "1.2.3"),
        ("0.0.0", (0, 0, 0, (), ""), "0.0.0"),
        ("10.20.30", (10, 20, 30, (), ""), "10.20.30"),
        ("1.0.0-rc.1", (1, 0, 0, ("rc", "1"), ""), "1.0.0-rc.1"),
        ("1.0.0-x-y.0", (1, 0, 0, ("x-y", "0"), ""), "1.0.0-x-y.0"),
        ("1.0.0-alpha.1+build.5", (1, 0, 0, ("alpha", "1"), "build.5"), "1.0.0-alpha.1+build.5"),
        ("1.0.0+20130313144700", (1, 0, 0, (), "20130313144700"), "1.0.0+20130313144700"),
        ("v2.1.0", (2, 1, 0, (), ""), "2.1.0"),
    ],
)
def test_parse_reads_every_part_and_str_prints_it_back(
    text: str, fields: tuple[object, ...], printed: str
) -> None:
    v = SemVer.parse(text)

    assert (v.major, v.minor, v.patch, v.pre, v.build) == fields
    assert str(v) == printed
    assert SemVer.parse(str(v)) == v


@pytest.mark.parametrize("lower, higher", list(itertools.pairwise(SPEC_CHAIN)))
def test_spec_precedence_examples_increase_pairwise(lower: str, higher: str) -> None:
    a, b = SemVer.parse(lower), SemVer.parse(higher)

    assert a < b
    assert b > a
    assert a != b
    assert not b < a


def test_sorting_a_shuffled_spec_chain_restores_it() -> None:
    shuffled = SPEC_CHAIN[:]
    random.Random(7).shuffle(shuffled)

    assert [str(v) for v in sorted(SemVer.parse(t) for t in shuffled)] == SPEC_CHAIN


@pytest.mark.parametrize(
    "lower, higher",
    [
        ("1.0.0", "2.0.0"),
        ("2.0.0", "2.1.0"),
        ("2.1.0", "2.1.1"),
        ("1.9.0", "1.10.0"),  # numeric, not lexical
        ("1.0.9", "1.0.10"),
        ("1.0.0-rc.9", "1.0.0-rc.10"),
        ("1.0.0-1", "1.0.0-a"),  # numeric identifiers sort before alphanumeric ones
        ("1.0.0-Z", "1.0.0-a"),  # alphanumeric identifiers compare in ASCII order
        ("1.0.0-rc.1", "1.0.0-rc.1.0"),  # more fields win when the rest are equal
        ("0.9.9", "1.0.0-alpha"),
    ],
)
def test_precedence(lower: str, higher: str) -> None:
    assert SemVer.parse(lower) < SemVer.parse(higher)
    assert SemVer.parse(higher) >= SemVer.parse(lower)


def test_build_metadata_does_not_take_part_in_precedence() -> None:
    a, b = SemVer.parse("1.0.0+a"), SemVer.parse("1.0.0+b")

    assert a == b
    assert hash(a) == hash(b)
    assert not a < b and not b < a
    assert SemVer.parse("1.0.0-rc.1+x") < SemVer.parse("1.0.0")


def test_a_leading_v_does_not_change_the_version() -> None:
    assert SemVer.parse("v1.2.3") == SemVer.parse("1.2.3")


def test_a_semver_never_equals_another_type() -> None:
    assert SemVer.parse("1.0.0") != "1.0.0"


@pytest.mark.parametrize(
    "text",
    [
        "",
        "1",
        "1.0",
        "1.0.0.0",
        "01.0.0",
        "1.01.0",
        "1.0.01",
        "-1.0.0",
        "a.b.c",
        "1.0.0-",
        "1.0.0+",
        "1.0.0-a..b",
        "1.0.0-01",  # numeric pre-release identifiers have no leading zero
        "1.0.0-rc.007",
        "1.0.0-rc_1",
        "1.0.0-\u03b1",  # GREEK SMALL LETTER ALPHA
        " 1.0.0",
        "1.0.0 ",
        "1.0.0\n",
        "1\u0661.0.0",  # ARABIC-INDIC DIGIT ONE is a digit, but not an ASCII one
        "V1.0.0",
        "vv1.0.0",
    ],
)
def test_invalid_versions_are_refused(text: str) -> None:
    with pytest.raises(ValueError, match=r"version|leading zero"):
        SemVer.parse(text)
