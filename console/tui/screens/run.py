"""RunScreen: one pipeline run live: a progress bar per step, its state, elapsed time, the run's log; cancel.

Fed by `WatchRun` (the run now, then every change until it ends; no polling). The elapsed times tick
once a second only while the run is active. `c` cancels it after a confirmation; a failed run shows
its error above the log.
"""

from __future__ import annotations

from typing import Any, ClassVar

from rich.markup import escape
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical
from textual.screen import Screen
from textual.timer import Timer
from textual.widgets import Footer, Static

from console.tui.client import HubUnavailableError
from console.tui.support import FINISHED, as_datetime, duration, hub, now, state_name, state_style
from console.tui.widgets.confirm import ConfirmScreen
from console.tui.widgets.log_view import LogView
from console.tui.widgets.step_progress import StepProgress

__all__ = ["RunScreen"]

CANCEL_REASON = "cancelled from the console"


class RunScreen(Screen[None]):
    """A run's steps and log, live."""

    DEFAULT_CSS = """
    RunScreen {
        & #run-summary { height: auto; padding: 0 1; background: $panel; }
        & #run-steps { height: auto; max-height: 50%; padding: 0 1; }
        & #run-error { height: auto; padding: 0 1; color: $error; display: none; }
        & #run-error.-shown { display: block; }
    }
    """

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("c", "cancel_run", "Cancel run"),
    ]

    def __init__(self, run_id: str, name: str | None = None, id: str | None = None) -> None:
        super().__init__(name=name, id=id)
        self.run_id = run_id
        self.run: dict[str, Any] = {}
        """The run as the newest WatchRun event gave it."""
        self.bars: dict[str, StepProgress] = {}
        self._ticker: Timer | None = None

    def compose(self) -> ComposeResult:
        yield Static(f"run {escape(self.run_id)} · loading…", id="run-summary")
        yield Vertical(id="run-steps")
        yield Static(id="run-error")
        yield LogView(streams=[{"run_id": self.run_id}])
        yield Footer()

    def on_mount(self) -> None:
        self._ticker = self.set_interval(1.0, self._tick, pause=True)
        self._watch()

    @property
    def state(self) -> str:
        return state_name(self.run.get("state"))

    @property
    def active(self) -> bool:
        """The run has not ended (its elapsed times still grow)."""
        return bool(self.run) and self.state not in FINISHED

    # --- the watch -------------------------------------------------------------

    @work(exclusive=True, group="run-watch")
    async def _watch(self) -> None:
        try:
            async for run in (await hub(self)).watch_run(self.run_id):
                await self.apply(run)
        except HubUnavailableError as exc:
            self.notify(exc.message, title=f"run {self.run_id}", severity="error")

    async def apply(self, run: dict[str, Any]) -> None:
        """Show `run` (a WatchRun event): the bars, the summary, the error; tick only while it is active."""
        self.run = run
        steps = self.query_one("#run-steps", Vertical)
        for step in run.get("steps") or []:
            name = str(step.get("name", ""))
            bar = self.bars.get(name)
            if bar is None:
                self.bars[name] = StepProgress(step)
                await steps.mount(self.bars[name])
            else:
                bar.step = step
        self._show_summary()
        error = self.query_one("#run-error", Static)
        error.update(escape(str(run.get("error") or "")))
        error.set_class(bool(run.get("error")), "-shown")
        if self._ticker is not None:
            (self._ticker.resume if self.active else self._ticker.pause)()
        self._tick()

    def _show_summary(self) -> None:
        run, state = self.run, self.state
        started = as_datetime(run.get("started_at")) or as_datetime(run.get("created_at"))
        ended = as_datetime(run.get("finished_at")) or now(self)
        elapsed = duration((ended - started).total_seconds()) if started else "-"
        instance = f" · instance {escape(str(run['instance_id']))}" if run.get("instance_id") else ""
        self.query_one("#run-summary", Static).update(
            f"[b]{escape(str(run.get('pipeline', '')))}[/] run {escape(self.run_id)} on "
            f"[b]{escape(str(run.get('node_id', '')))}[/]{instance} · "
            f"[{state_style(state) or 'default'}]{escape(state)}[/] · {elapsed}")

    def _tick(self) -> None:
        moment = now(self)
        for bar in self.bars.values():
            bar.tick(moment)
        if self.run:
            self._show_summary()

    # --- actions ---------------------------------------------------------------

    def action_cancel_run(self) -> None:
        """Cancel the run (after a confirmation); its cleanup steps still run."""
        if not self.active:
            self.notify("the run has already ended" if self.run else "the run is not loaded yet",
                        severity="warning")
            return
        question = f"Cancel run {self.run_id} ({self.run.get('pipeline', '')} on {self.run.get('node_id', '')})?"
        self.app.push_screen(ConfirmScreen("Cancel the run", question, confirm="Cancel run"), self._confirmed)

    def _confirmed(self, yes: bool | None) -> None:
        if yes:
            self._cancel()

    @work(group="run-cancel")
    async def _cancel(self) -> None:
        try:
            run = await (await hub(self)).cancel_run(self.run_id, CANCEL_REASON)
        except HubUnavailableError as exc:
            self.notify(exc.message, title="cancel", severity="error")
            return
        self.notify(f"run {self.run_id}: {state_name(run.get('state'))}", title="cancel requested")
