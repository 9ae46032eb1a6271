"""`${...}` substitution in pipeline values, and `when` conditions.

    render("${params.port}", scope)            -> 8080        (exactly one reference keeps its type)
    render("port ${params.port}", scope)       -> "port 8080" (pieces are formatted into the string)
    render("$${HOME}", scope)                  -> "${HOME}"   (`$${` is a literal `${`)
    evaluate_when("${params.health} == http", scope)

A reference is a dotted name: `params.x`, `steps.<step>.outputs.<key>`, `run.id`, `instance.id`,
`instance.data_dir`, `node.id`, `vars.x` (file.render only). A numeric part indexes a list
(`steps.network.outputs.ports.0.host_port`). Substituted values are never rendered again.
The scope is `{"params": {...}, "steps": {name: {"outputs": {...}}}, "run": {"id": ...},
"instance": {"id": ..., "data_dir": ...}, "node": {"id": ...}}`.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from agent.errors import PipelineError, Problem

__all__ = ["evaluate_when", "format_value", "has_template", "lookup", "references", "render", "truthy"]

_TOKEN = re.compile(r"\$\$\{|\$\{([^{}]*)\}|\$\{")
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z0-9_-]+)*")
_OPERATOR = re.compile(r"==|!=")
_FALSE = frozenset({"", "false", "0", "no", "off", "null", "none"})


@dataclass(frozen=True)
class _Ref:
    name: str


def _pieces(text: str, path: str = "") -> list[str | _Ref]:
    """Split a string into literal text and references; PipelineError on a malformed `${`."""
    out: list[str | _Ref] = []
    pos = 0
    for match in _TOKEN.finditer(text):
        out.append(text[pos:match.start()])
        pos = match.end()
        token = match.group(0)
        if token == "$${":
            out.append("${")
        elif token == "${":
            raise PipelineError([Problem(path, "unterminated '${' (write '$${' for a literal '${')")])
        else:
            out.append(_Ref(_reference_name(match.group(1), path)))
    out.append(text[pos:])
    return [piece for piece in out if piece != ""]


def _reference_name(inner: str, path: str) -> str:
    name = inner.strip()
    if not _NAME.fullmatch(name):
        raise PipelineError([Problem(path, f"bad reference '${{{inner}}}': expected a dotted name like params.x")])
    return name


def _leaves(value: Any, path: str) -> Iterator[tuple[str, str]]:
    """Every string in a nested value, with its path (`a.b[0]`)."""
    if isinstance(value, str):
        yield path, value
    elif isinstance(value, Mapping):
        for key, item in value.items():
            yield from _leaves(item, f"{path}.{key}" if path else str(key))
    elif isinstance(value, list | tuple):
        for index, item in enumerate(value):
            yield from _leaves(item, f"{path}[{index}]")


def has_template(value: Any) -> bool:
    """Whether any string in `value` holds a `${...}` reference (escapes `$${` do not count)."""
    return bool(references(value))


def references(value: Any) -> set[str]:
    """The dotted names referenced anywhere in `value`; PipelineError (with the path) on a malformed `${`."""
    names: set[str] = set()
    for path, text in _leaves(value, ""):
        if "${" in text:
            names.update(piece.name for piece in _pieces(text, path) if isinstance(piece, _Ref))
    return names


def lookup(scope: Mapping[str, Any], name: str, path: str = "") -> Any:
    """The value of a dotted name in the scope; PipelineError naming what is missing."""
    current: Any = scope
    for part in name.split("."):
        if isinstance(current, Mapping) and part in current:
            current = current[part]
        elif isinstance(current, list | tuple) and part.isdigit() and int(part) < len(current):
            current = current[int(part)]
        else:
            raise PipelineError([Problem(path, f"'${{{name}}}' has no value ('{part}' is missing)")])
    return current


def format_value(value: Any) -> str:
    """A value as it reads inside a longer string."""
    if isinstance(value, str):
        return value
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    return json.dumps(value, separators=(",", ":"), default=str)


def _render_string(text: str, scope: Mapping[str, Any], path: str) -> Any:
    if "${" not in text:
        return text
    pieces = _pieces(text, path)
    if len(pieces) == 1 and isinstance(pieces[0], _Ref):
        return lookup(scope, pieces[0].name, path)
    return "".join(piece if isinstance(piece, str) else format_value(lookup(scope, piece.name, path))
                   for piece in pieces)


def render(value: Any, scope: Mapping[str, Any], path: str = "") -> Any:
    """Substitute every `${...}` in `value` (recursively through dicts and lists).

    A string that is exactly one reference becomes the referenced value (its type kept); other strings
    get the formatted values (`true`/`false`, "" for null, JSON for lists and objects). A missing name
    raises PipelineError whose problem has the path of the field (`path` prefixes it).
    """
    if isinstance(value, str):
        return _render_string(value, scope, path)
    if isinstance(value, Mapping):
        return {key: render(item, scope, f"{path}.{key}" if path else str(key)) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [render(item, scope, f"{path}[{index}]") for index, item in enumerate(value)]
    return value


def truthy(value: Any) -> bool:
    """False for "" / "false" / "0" / "no" / "off" / "null" / "none" (any case, trimmed), false, 0, null, [] and {}."""
    if value is None:
        return False
    if isinstance(value, bool):
        return value
    if isinstance(value, int | float):
        return value != 0
    if isinstance(value, str):
        return value.strip().lower() not in _FALSE
    if isinstance(value, Mapping | list | tuple | set):
        return len(value) > 0
    return True


def _split_condition(expr: str) -> tuple[str, str, str] | None:
    """`A == B` / `A != B` → (A, operator, B), looking only outside `${...}`; None without an operator."""
    masked = _TOKEN.sub(lambda match: "_" * len(match.group(0)), expr)
    found = _OPERATOR.search(masked)
    if found is None:
        return None
    return expr[:found.start()], found.group(0), expr[found.end():]


def _operand(text: str, scope: Mapping[str, Any], path: str) -> str:
    value = format_value(render(text.strip(), scope, path)).strip()
    if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
        value = value[1:-1].strip()
    return value


def evaluate_when(expr: str | bool | None, scope: Mapping[str, Any], path: str = "when") -> bool:
    """Whether a step runs: the rendered value is truthy, or the comparison (strings, trimmed, quotes dropped) holds."""
    if expr is None or isinstance(expr, bool):
        return expr is None or expr
    condition = _split_condition(expr)
    if condition is None:
        return truthy(render(expr, scope, path))
    left, operator, right = condition
    equal = _operand(left, scope, path) == _operand(right, scope, path)
    return equal if operator == "==" else not equal
