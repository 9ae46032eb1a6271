"""SVG snapshots of the fleet and node screens over the FakeClient's deterministic fleet.

Regenerate after an intended change: `pytest tests/unit/console/tui/test_snapshots.py --snapshot-update`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fakes import make_app
from textual.pilot import Pilot

SIZE = (160, 40)


async def settle(pilot: Pilot[Any]) -> None:
    await pilot.pause(0.2)
    await pilot.wait_for_scheduled_animations()


def test_fleet_screen(snap_compare: Callable[..., bool]) -> None:
    assert snap_compare(make_app(), terminal_size=SIZE, run_before=settle)


def test_fleet_screen_filtered_and_sorted(snap_compare: Callable[..., bool]) -> None:
    async def filter_and_sort(pilot: Pilot[Any]) -> None:
        await settle(pilot)
        await pilot.press("slash", *"region=eu", "enter", "C", "s")
        await settle(pilot)

    assert snap_compare(make_app(), terminal_size=SIZE, run_before=filter_and_sort)


def test_node_screen(snap_compare: Callable[..., bool]) -> None:
    async def open_node(pilot: Pilot[Any]) -> None:
        await settle(pilot)
        await pilot.press("down", "down", "enter")
        await settle(pilot)

    assert snap_compare(make_app(), terminal_size=SIZE, run_before=open_node)


def test_help_screen(snap_compare: Callable[..., bool]) -> None:
    async def open_help(pilot: Pilot[Any]) -> None:
        await settle(pilot)
        await pilot.press("question_mark")
        await settle(pilot)

    assert snap_compare(make_app(), terminal_size=SIZE, run_before=open_help)
