"""Helpers for Part C's Pilot tests: an app over a FakeClient, and waiting for a condition (no clock)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fakes import FIXED_NOW, FakeClient

from console.tui.app import GamenodeApp


def app_for(client: FakeClient) -> GamenodeApp:
    return GamenodeApp(lambda: client, clock=lambda: FIXED_NOW)  # type: ignore[arg-type, return-value]


async def until(pilot: Any, condition: Callable[[], object], rounds: int = 500) -> None:
    """Let the app run until `condition()` holds (AssertionError when it never does)."""
    for _ in range(rounds):
        if condition():
            return
        await pilot.pause(0.01)
    raise AssertionError("condition never held")


def notified(app: GamenodeApp, text: str) -> bool:
    """A notification that contains `text` was shown."""
    return any(text in str(n.message) or text in str(n.title) for n in app._notifications)
