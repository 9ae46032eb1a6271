"""The fleet screen's `/` filter: plain words match id, name and location; selectors match labels.

    NodeFilter.parse("fra")                 id, name or location contains "fra" (or a label `fra` exists)
    NodeFilter.parse("region=eu,!spot")     a label selector (console.service.selector)
    NodeFilter.parse("tier in (gold,silver)")

A text with selector syntax (`=`, `!`, ` in (`, ` notin (`) is a selector and
nothing else; a plain word is matched as text and as "has this label".
A bad selector raises `InvalidInput` with the column of the mistake.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from console.service.selector import Selector

__all__ = ["NodeFilter"]

_SELECTOR_SYNTAX = re.compile(r"[=!]|\s(not)?in\s*\(")
_WORD = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9._/-]*[A-Za-z0-9])?$")


@dataclass(frozen=True, slots=True)
class NodeFilter:
    text: str
    selector: Selector | None
    plain: bool
    """Whether the text is also matched against id, name and location."""

    @classmethod
    def parse(cls, text: str) -> NodeFilter:
        """The filter `text` means; InvalidInput for a bad selector."""
        text = text.strip()
        if not text:
            return cls("", None, False)
        if _SELECTOR_SYNTAX.search(text):
            return cls(text, Selector.parse(text), False)
        selector = Selector.parse(text) if _WORD.match(text) else None
        return cls(text, selector, True)

    def __bool__(self) -> bool:
        return bool(self.text)

    def matches(self, node: dict[str, Any]) -> bool:
        """Whether the node passes the filter."""
        if not self.text:
            return True
        if self.plain:
            needle = self.text.lower()
            for field in ("id", "name", "location"):
                if needle in str(node.get(field, "")).lower():
                    return True
        return self.selector is not None and self.selector.matches(node.get("labels") or {})
