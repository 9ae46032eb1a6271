"""RunScreen: step bars live from WatchRun, elapsed times, the error, cancel with a confirmation."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

from fakes import FIXED_NOW, FakeClient, iso
from textual.widgets import ProgressBar
from tuihelp import app_for, notified, until

from console.tui.screens.run import CANCEL_REASON, RunScreen
from console.tui.widgets.confirm import ConfirmScreen
from console.tui.widgets.step_progress import StepProgress


class RunFeed(FakeClient):
    """WatchRun sends what the test puts in `events` (None ends it)."""

    def __init__(self) -> None:
        super().__init__()
        self.events: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue()

    async def watch_run(self, run_id: str) -> AsyncIterator[dict[str, Any]]:
        self._record("watch_run", run_id)
        while (event := await self.events.get()) is not None:
            yield event


def run(state: str, steps: list[dict[str, Any]], error: str | None = None) -> dict[str, Any]:
    return {"id": "run-0009", "node_id": "eu-fra-01", "pipeline": "platform-start", "instance_id": "arena-9",
            "state": state, "error": error, "steps": steps, "created_at": iso(FIXED_NOW - timedelta(seconds=30)),
            "started_at": iso(FIXED_NOW - timedelta(seconds=30)), "finished_at": None, "params": {}}


def step(name: str, state: str, progress: int = 0, message: str = "", **times: Any) -> dict[str, Any]:
    return {"name": name, "action": "image.pull", "state": state, "progress": progress, "message": message,
            "attempt": 1, "started_at": times.get("started"), "finished_at": times.get("finished"), "cleanup": False}


async def test_bars_follow_watch_run_events() -> None:
    client = RunFeed()
    app = app_for(client)
    async with app.run_test(size=(150, 45)) as pilot:
        screen = RunScreen("run-0009")
        await app.push_screen(screen)
        started = iso(FIXED_NOW - timedelta(seconds=12))
        client.events.put_nowait(run("running", [step("pull", "running", 40, "12 MB of 30", started=started),
                                                 step("run", "pending")]))
        await until(pilot, lambda: len(screen.bars) == 2 and all(b.is_mounted for b in screen.bars.values()))
        pull = screen.bars["pull"]
        await until(pilot, lambda: pull.query_one(ProgressBar).progress == 40)
        assert pull.state == "running"
        assert pull.elapsed() == 12.0
        assert screen._ticker is not None and screen.active
        client.events.put_nowait(run("running", [step("pull", "succeeded", 100, started=started,
                                                      finished=iso(FIXED_NOW - timedelta(seconds=2))),
                                                 step("run", "running", 10, started=iso(FIXED_NOW))]))
        await until(pilot, lambda: screen.bars["run"].state == "running")
        assert pull.query_one(ProgressBar).progress == 100
        assert pull.elapsed() == 10.0
        assert len(screen.query(StepProgress)) == 2


async def test_a_failed_run_shows_its_error_and_stops_ticking() -> None:
    client = RunFeed()
    app = app_for(client)
    async with app.run_test(size=(150, 45)) as pilot:
        screen = RunScreen("run-0009")
        await app.push_screen(screen)
        client.events.put_nowait(run("failed", [step("pull", "failed", 0, "manifest unknown")],
                                     error="step 'pull' failed: manifest unknown"))
        client.events.put_nowait(None)
        await until(pilot, lambda: screen.query_one("#run-error").has_class("-shown"))
        assert "manifest unknown" in str(screen.query_one("#run-error").render())
        assert not screen.active
        assert screen._ticker is not None and screen._ticker._active.is_set() is False


async def test_cancel_asks_then_calls_cancel_run() -> None:
    client = RunFeed()
    app = app_for(client)
    async with app.run_test(size=(150, 45)) as pilot:
        screen = RunScreen("run-0001")
        await app.push_screen(screen)
        client.events.put_nowait(run("running", [step("pull", "running", 5)]))
        await until(pilot, lambda: screen.active)
        await pilot.press("c")
        await until(pilot, lambda: isinstance(app.screen, ConfirmScreen))
        await pilot.press("n")
        await until(pilot, lambda: app.screen is screen)
        assert not client.called("cancel_run")
        await pilot.press("c")
        await until(pilot, lambda: isinstance(app.screen, ConfirmScreen))
        await pilot.press("y")
        await until(pilot, lambda: client.called("cancel_run"))
        assert client.called("cancel_run")[0][0] == ("run-0001", CANCEL_REASON)
        await until(pilot, lambda: notified(app, "cancelling"))


async def test_cancel_of_an_ended_run_is_refused() -> None:
    client = RunFeed()
    app = app_for(client)
    async with app.run_test(size=(150, 45)) as pilot:
        screen = RunScreen("run-0009")
        await app.push_screen(screen)
        client.events.put_nowait(run("succeeded", [step("pull", "succeeded", 100)]))
        await until(pilot, lambda: screen.run)
        await pilot.press("c")
        await until(pilot, lambda: notified(app, "already ended"))
        assert not isinstance(app.screen, ConfirmScreen)
