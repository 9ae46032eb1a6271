"""YAML in and out, safely and durably.

Loading uses PyYAML's C safe loader (the pure-Python one when libyaml is
absent); dumping the C safe dumper. Writes go to a temp file in the same
directory, are fsynced, renamed over the target and the directory is fsynced,
so a reader (or a crash) sees the old file or the new one, never half of one.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

from console.errors import CorruptData

__all__ = ["TEMP_MARK", "dump_yaml", "fsync_dir", "line_of", "load_yaml", "parse_yaml", "write_atomic"]

try:
    from yaml import CSafeDumper as _Dumper
    from yaml import CSafeLoader as _Loader
except ImportError:  # pragma: no cover - libyaml missing
    from yaml import SafeDumper as _Dumper  # type: ignore[assignment]
    from yaml import SafeLoader as _Loader  # type: ignore[assignment]

TEMP_MARK = ".tmp-"
"""Temp files are named `.NAME.tmp-RANDOM`; leftovers were never acknowledged."""


def parse_yaml(text: bytes | str, path: str) -> Any:
    """Parse one YAML document; a syntax error names `path` and its line."""
    try:
        return yaml.load(text, Loader=_Loader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else None
        problem = f"{exc.problem or exc.context}"
        if exc.problem and exc.context and exc.context_mark is not None:
            problem += f", {exc.context} at line {exc.context_mark.line + 1}"  # where an open ' or [ began
        raise CorruptData(path, f"invalid YAML: {problem}", line) from exc
    except yaml.YAMLError as exc:
        raise CorruptData(path, f"invalid YAML: {exc}") from exc


def load_yaml(path: Path) -> Any:
    return parse_yaml(path.read_bytes(), str(path))


def dump_yaml(data: Any) -> str:
    return yaml.dump(data, Dumper=_Dumper, sort_keys=False, allow_unicode=True, default_flow_style=False)


def line_of(text: bytes | str, loc: Sequence[str | int]) -> int | None:
    """The 1-based line of the value at `loc` (keys and list indexes) in `text`.

    Falls back to the deepest part of `loc` that exists; None when the
    document cannot be composed at all.
    """
    try:
        node: yaml.Node | None = yaml.compose(text, Loader=_Loader)
    except yaml.YAMLError:
        return None
    line = node.start_mark.line + 1 if node is not None else None
    for part in loc:
        child = _child(node, part)
        if child is None:
            break
        node = child
        line = node.start_mark.line + 1
    return line


def _child(node: yaml.Node | None, part: str | int) -> yaml.Node | None:
    if isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            if isinstance(key, yaml.ScalarNode) and key.value == str(part):
                found: yaml.Node = value
                return found
    if isinstance(node, yaml.SequenceNode) and isinstance(part, int) and 0 <= part < len(node.value):
        child: yaml.Node = node.value[part]
        return child
    return None


def write_atomic(path: Path, data: bytes) -> None:
    """Replace `path` with `data`: temp file, fsync, rename, fsync the directory."""
    tmp = path.with_name(f".{path.name}{TEMP_MARK}{secrets.token_hex(4)}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)


def fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
