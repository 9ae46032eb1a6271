"""Pydantic validation errors as `FieldError`s a person can act on."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from console.errors import FieldError, InvalidInput

__all__ = ["field_errors", "format_loc", "validate"]

M = TypeVar("M", bound=BaseModel)

_PATTERN_WORDS = {
    r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$": (
        "must be 1-128 letters, digits, '.', '_' or '-', starting with a letter or digit"
    ),
    r"^[A-Za-z0-9]([A-Za-z0-9._/-]{0,126}[A-Za-z0-9])?$": (
        "label keys are 1-128 letters, digits, '.', '_', '-' or '/', starting and ending alphanumeric"
    ),
    r"^([A-Za-z0-9]([A-Za-z0-9._-]{0,126}[A-Za-z0-9])?)?$": (
        "label values are up to 128 letters, digits, '.', '_' or '-', starting and ending alphanumeric"
    ),
}


def format_loc(loc: Sequence[str | int]) -> str:
    """`("steps", 2, "with")` → `steps[2].with`."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif part == "[key]":
            out += " (key)"
        else:
            out += f".{part}" if out else str(part)
    return out


def field_errors(exc: ValidationError, prefix: Sequence[str | int] = ()) -> list[FieldError]:
    errors = []
    for err in exc.errors(include_url=False):
        message = err["msg"]
        if err["type"] == "string_pattern_mismatch":
            pattern = str((err.get("ctx") or {}).get("pattern", ""))
            message = _PATTERN_WORDS.get(pattern, message)
        if "input" in err and err["type"] in ("enum", "literal_error", "string_pattern_mismatch"):
            message += f" (got {err['input']!r})"
        errors.append(FieldError(format_loc([*prefix, *err["loc"]]), message))
    return errors


def validate(model: type[M], data: Any, what: str) -> M:
    """`model.model_validate(data)`, raising `InvalidInput` with field paths."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise InvalidInput(f"invalid {what}", field_errors(exc)) from None
