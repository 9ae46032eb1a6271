"""Label selectors: `region=eu,rack!=r3,gpu,!spot,tier in (gold,silver)`.

    selector     := requirement ("," requirement)*
    requirement  := key ("=" | "==" | "!=") value      equality / inequality
                  | key                                 the label exists
                  | "!" key                             the label does not exist
                  | key ("in" | "notin") "(" values ")" one of / none of
    values       := value ("," value)*

An empty selector matches everything. `key!=value` also matches nodes
without the label (as in Kubernetes). A mistake is reported with the column
where it was found.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum

from console.errors import InvalidInput

__all__ = ["Op", "Requirement", "Selector"]

_KEY = re.compile(r"[A-Za-z0-9]([A-Za-z0-9._/-]*[A-Za-z0-9])?")
_VALUE = re.compile(r"([A-Za-z0-9]([A-Za-z0-9._-]*[A-Za-z0-9])?)?")


class Op(StrEnum):
    EQ = "="
    NE = "!="
    EXISTS = "exists"
    NOT_EXISTS = "!"
    IN = "in"
    NOT_IN = "notin"


@dataclass(frozen=True, slots=True)
class Requirement:
    key: str
    op: Op
    values: tuple[str, ...] = ()

    def matches(self, labels: Mapping[str, str]) -> bool:
        value = labels.get(self.key)
        match self.op:
            case Op.EQ | Op.IN:
                return value is not None and value in self.values
            case Op.NE | Op.NOT_IN:
                return value is None or value not in self.values
            case Op.EXISTS:
                return value is not None
            case Op.NOT_EXISTS:
                return value is None
        raise AssertionError(self.op)  # pragma: no cover

    def __str__(self) -> str:
        match self.op:
            case Op.EQ | Op.NE:
                return f"{self.key}{self.op.value}{self.values[0]}"
            case Op.EXISTS:
                return self.key
            case Op.NOT_EXISTS:
                return f"!{self.key}"
        return f"{self.key} {self.op.value} ({','.join(self.values)})"


@dataclass(frozen=True, slots=True)
class Selector:
    requirements: tuple[Requirement, ...] = ()

    @classmethod
    def parse(cls, text: str | None) -> Selector:
        return _Parser(text or "").parse()

    def matches(self, labels: Mapping[str, str]) -> bool:
        return all(r.matches(labels) for r in self.requirements)

    def __bool__(self) -> bool:
        return bool(self.requirements)

    def __str__(self) -> str:
        return ",".join(str(r) for r in self.requirements)


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0

    def parse(self) -> Selector:
        if not self.text.strip():
            return Selector()
        reqs = [self._requirement()]
        while self._skip_space() and self._peek(","):
            self.pos += 1
            reqs.append(self._requirement())
        if self._skip_space():
            self._fail("expected ',' between requirements")
        return Selector(tuple(reqs))

    def _requirement(self) -> Requirement:
        self._skip_space()
        if self._peek("!") and not self._peek("!="):
            self.pos += 1
            self._skip_space()
            return Requirement(self._match(_KEY, "a label key"), Op.NOT_EXISTS)
        key = self._match(_KEY, "a label key")
        self._skip_space()
        for token, op in (("==", Op.EQ), ("!=", Op.NE), ("=", Op.EQ)):
            if self._peek(token):
                self.pos += len(token)
                self._skip_space()
                return Requirement(key, op, (self._match(_VALUE, "a label value"),))
        word = self._word()
        if word in ("in", "notin"):
            return Requirement(key, Op.IN if word == "in" else Op.NOT_IN, self._values())
        if word:
            self._fail(f"unknown operator {word!r} (use =, ==, !=, in, notin)", back=len(word))
        return Requirement(key, Op.EXISTS)

    def _values(self) -> tuple[str, ...]:
        self._skip_space()
        self._expect("(")
        values = []
        while True:
            self._skip_space()
            values.append(self._match(_VALUE, "a label value"))
            self._skip_space()
            if self._peek(")"):
                self.pos += 1
                return tuple(values)
            self._expect(",")

    # --- lexing -------------------------------------------------------------

    def _word(self) -> str:
        m = re.compile(r"[a-z]+").match(self.text, self.pos)
        if m is None or (self.text[m.end() : m.end() + 1] not in ("", " ", "(")):
            return "" if m is None else self._take(m)
        return self._take(m)

    def _take(self, m: re.Match[str]) -> str:
        self.pos = m.end()
        return m.group()

    def _match(self, pattern: re.Pattern[str], what: str) -> str:
        m = pattern.match(self.text, self.pos)
        if m is None or (not m.group() and pattern is _KEY):
            self._fail(f"expected {what}")
        assert m is not None
        if len(m.group()) > 128:
            self._fail(f"{what} is longer than 128 characters")
        return self._take(m)

    def _expect(self, token: str) -> None:
        if not self._peek(token):
            self._fail(f"expected {token!r}")
        self.pos += len(token)

    def _peek(self, token: str) -> bool:
        return self.text.startswith(token, self.pos)

    def _skip_space(self) -> bool:
        """Skip blanks; true while text remains."""
        while self.pos < len(self.text) and self.text[self.pos] == " ":
            self.pos += 1
        return self.pos < len(self.text)

    def _fail(self, problem: str, back: int = 0) -> None:
        col = self.pos - back + 1
        raise InvalidInput(f"label selector {self.text!r}, column {col}: {problem}")
