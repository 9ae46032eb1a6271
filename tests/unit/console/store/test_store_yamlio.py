"""YAML in and out: atomic writes, errors with lines, locating values by path."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from console.errors import CorruptData
from console.store import yamlio
from console.store.yamlio import dump_yaml, line_of, load_yaml, parse_yaml, write_atomic


def _temps(directory: Path) -> list[str]:
    return [p.name for p in directory.iterdir() if yamlio.TEMP_MARK in p.name]


# --- write_atomic -------------------------------------------------------------


def test_write_atomic_creates_a_file(tmp_path: Path) -> None:
    path = tmp_path / "a.yaml"
    write_atomic(path, b"a: 1\n")
    assert path.read_bytes() == b"a: 1\n"
    assert _temps(tmp_path) == []


def test_write_atomic_replaces_by_rename_and_leaves_no_temp_file(tmp_path: Path) -> None:
    path = tmp_path / "a.yaml"
    write_atomic(path, b"old\n")
    with path.open("rb") as reader:  # a reader that opened the old file ...
        write_atomic(path, b"new, and longer\n")
        assert reader.read() == b"old\n"  # ... keeps reading the old file whole
    assert path.read_bytes() == b"new, and longer\n"
    assert os.listdir(tmp_path) == ["a.yaml"]


def test_write_atomic_of_empty_data(tmp_path: Path) -> None:
    path = tmp_path / "a"
    write_atomic(path, b"x")
    write_atomic(path, b"")
    assert path.read_bytes() == b""


def test_a_failed_rename_keeps_the_old_file_and_removes_the_temp(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "a.yaml"
    write_atomic(path, b"old\n")

    def broken_replace(src: Any, dst: Any) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", broken_replace)
    with pytest.raises(OSError, match="No space left"):
        write_atomic(path, b"new\n")
    assert path.read_bytes() == b"old\n"
    assert os.listdir(tmp_path) == ["a.yaml"]


def test_a_failed_fsync_keeps_the_old_file_and_removes_the_temp(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "a.yaml"
    write_atomic(path, b"old\n")

    def broken_fsync(fd: int) -> None:
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(os, "fsync", broken_fsync)
    with pytest.raises(OSError, match="Input/output error"):
        write_atomic(path, b"new\n")
    assert path.read_bytes() == b"old\n"
    assert os.listdir(tmp_path) == ["a.yaml"]


def test_an_interrupt_while_writing_removes_the_temp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "a.yaml"

    def interrupted(fd: int) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(os, "fsync", interrupted)
    with pytest.raises(KeyboardInterrupt):
        write_atomic(path, b"new\n")
    assert os.listdir(tmp_path) == []


def test_write_atomic_into_a_missing_directory_fails_and_creates_nothing(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        write_atomic(tmp_path / "missing" / "a.yaml", b"x")
    assert os.listdir(tmp_path) == []


def test_write_atomic_syncs_the_file_before_the_rename_and_the_directory_after(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    events: list[str] = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd: int) -> None:
        events.append("fsync-dir" if os.path.isdir(f"/proc/self/fd/{fd}") else "fsync-file")
        real_fsync(fd)

    def replace(src: Any, dst: Any) -> None:
        events.append("rename")
        real_replace(src, dst)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "replace", replace)
    write_atomic(tmp_path / "a", b"data")
    assert events == ["fsync-file", "rename", "fsync-dir"]


# --- parse_yaml and load_yaml ---------------------------------------------------


def test_parse_yaml_reads_a_document() -> None:
    data = parse_yaml(b"a: 1\nb: [x, y]\nc: {d: null}\n", "f.yaml")
    assert data == {"a": 1, "b": ["x", "y"], "c": {"d": None}}


def test_parse_yaml_error_carries_path_and_line() -> None:
    with pytest.raises(CorruptData) as info:
        parse_yaml("a: 1\nb: 2\nc: d: e\n", "dir/f.yaml")
    error = info.value
    assert (error.path, error.line) == ("dir/f.yaml", 3)
    assert str(error).startswith("dir/f.yaml:3: invalid YAML: ")


def test_parse_yaml_error_without_a_position_has_no_line() -> None:
    with pytest.raises(CorruptData) as info:
        parse_yaml(b"a: \xff\n", "f.yaml")
    assert info.value.line is None
    assert str(info.value).startswith("f.yaml: invalid YAML")


def test_parse_yaml_constructs_no_python_objects(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    with pytest.raises(CorruptData):
        parse_yaml(f"!!python/object/apply:os.system ['touch {marker}']\n", "f.yaml")
    assert not marker.exists()


def test_load_yaml_reads_a_file_and_names_it_in_errors(tmp_path: Path) -> None:
    good, bad = tmp_path / "good.yaml", tmp_path / "bad.yaml"
    good.write_text("x: [1, 2]\n")
    bad.write_text("x: [1, 2\n")
    assert load_yaml(good) == {"x": [1, 2]}
    with pytest.raises(CorruptData) as info:
        load_yaml(bad)
    assert info.value.path == str(bad)


# --- dump_yaml ------------------------------------------------------------------


def test_dump_yaml_keeps_key_order_and_block_style() -> None:
    text = dump_yaml({"zeta": 1, "alpha": {"b": 2, "a": [1, 2]}})
    assert text == "zeta: 1\nalpha:\n  b: 2\n  a:\n  - 1\n  - 2\n"


def test_dump_yaml_writes_unicode_as_text() -> None:
    assert dump_yaml({"name": "Ŝerver 服务器"}) == "name: Ŝerver 服务器\n"


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=15,
)


@settings(max_examples=200, deadline=None)
@given(json_values)
def test_dump_then_parse_gives_back_the_same_data(value: Any) -> None:
    assert parse_yaml(dump_yaml(value).encode(), "f.yaml") == value


# --- line_of --------------------------------------------------------------------

DOC = """\
id: g1
name: Game
labels:
  region: eu
versions:
- version: 1.0.0
  image: game:1
- version: 2.0.0
  image: game:2
  resources:
    cpu: 2
    gpu: 1
matrix: [[1, 2], [3, 4]]
"""


@pytest.mark.parametrize(
    ("loc", "line"),
    [
        ((), 1),
        (("id",), 1),
        (("name",), 2),
        (("labels", "region"), 4),
        (("versions",), 6),
        (("versions", 0), 6),
        (("versions", 0, "image"), 7),
        (("versions", 1, "version"), 8),
        (("versions", 1, "resources", "gpu"), 12),
        (("matrix", 1, 0), 13),
    ],
)
def test_line_of_finds_keys_and_list_indexes(loc: tuple[str | int, ...], line: int) -> None:
    assert line_of(DOC, loc) == line
    assert line_of(DOC.encode(), loc) == line


@pytest.mark.parametrize(
    ("loc", "line"),
    [
        (("nope",), 1),
        (("labels", "nope"), 4),
        (("versions", 7), 6),
        (("versions", 1, "resources", "cpu", "deeper"), 11),
        (("versions", "0"), 6),
        (("name", 0), 2),
    ],
)
def test_line_of_falls_back_to_the_deepest_part_that_exists(loc: tuple[str | int, ...], line: int) -> None:
    assert line_of(DOC, loc) == line


def test_line_of_a_document_it_cannot_read_is_none() -> None:
    assert line_of("a: [1, 2\n", ["a"]) is None
    assert line_of("", ["a"]) is None


def test_line_of_a_number_key_matches_its_text() -> None:
    assert line_of("a: 1\n7:\n  x: 1\n", [7, "x"]) == 3
