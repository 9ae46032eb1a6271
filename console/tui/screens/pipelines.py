"""PipelinesScreen: pick a pipeline of the hub's catalog and one or several nodes, fill its params, launch.

One run is started per node (`StartRun`); the run view of the first one opens, the others are named
in a notification. Params are checked against the pipeline's param specs before anything is sent
(errors under their fields); the hub's own refusal (node offline, in maintenance) is a notification.
"""

from __future__ import annotations

from typing import Any, ClassVar

from rich.markup import escape
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.screen import Screen
from textual.widgets import Button, Footer, Input, OptionList, SelectionList, Static
from textual.widgets.option_list import Option

from console.tui.client import HubUnavailableError
from console.tui.screens.run import RunScreen
from console.tui.support import fleet_snapshot, hub
from console.tui.widgets.params_form import ParamsForm

__all__ = ["PipelinesScreen"]


class PipelinesScreen(Screen[None]):
    """The pipeline catalog, the nodes to run on, the params form and the launch key."""

    DEFAULT_CSS = """
    PipelinesScreen {
        & #pipelines-left { width: 40%; min-width: 30; }
        & #pipeline-list { height: 1fr; border: round $primary; }
        & #node-list { height: 1fr; border: round $primary; }
        & #pipeline-right { width: 1fr; border: round $primary; }
        & #pipeline-about { height: auto; padding: 0 1; }
        & #launch-bar { height: auto; padding: 0 1; }
        & #instance-id { width: 1fr; }
    }
    """

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("ctrl+s", "launch", "Launch"),
        Binding("f5", "reload", "Reload"),
    ]

    def __init__(self, name: str | None = None, id: str | None = None, classes: str | None = None) -> None:
        super().__init__(name=name, id=id, classes=classes)
        self.catalog: dict[str, dict[str, Any]] = {}
        self.selected: str | None = None
        """The pipeline whose params the form shows."""

    def compose(self) -> ComposeResult:
        with Horizontal():
            with Vertical(id="pipelines-left"):
                yield OptionList(id="pipeline-list")
                yield SelectionList[str](id="node-list")
            with Vertical(id="pipeline-right"):
                yield Static("loading the catalog…", id="pipeline-about")
                yield ParamsForm(id="params")
                with Horizontal(id="launch-bar"):
                    yield Input(placeholder="instance id (stop/use pipelines)", id="instance-id")
                    yield Button("Launch", variant="primary", id="launch")
        yield Footer()

    def on_mount(self) -> None:
        self.query_one("#pipeline-list").border_title = "pipelines"
        self.query_one("#node-list").border_title = "nodes (space: select)"
        self.query_one("#pipeline-right").border_title = "params"
        self.action_reload()

    # --- loading ---------------------------------------------------------------

    @work(exclusive=True, group="pipelines-load")
    async def _load(self) -> None:
        client = (await hub(self))
        try:
            pipelines = await client.pipelines()
            nodes = await fleet_snapshot(client)
        except HubUnavailableError as exc:
            self.notify(exc.message, title="pipelines", severity="error")
            return
        self.catalog = {str(p["name"]): p for p in pipelines}
        options = self.query_one("#pipeline-list", OptionList)
        options.clear_options()
        options.add_options([Option(self._option_text(p), id=str(p["name"])) for p in pipelines])
        node_list = self.query_one("#node-list", SelectionList)
        node_list.clear_options()
        node_list.add_options([(f"{n['id']}  [dim]{escape(str(n.get('status', '')))}[/]", str(n["id"]))
                               for n in nodes])
        if pipelines:
            options.highlighted = 0
            await self._show(str(pipelines[0]["name"]))

    @staticmethod
    def _option_text(pipeline: dict[str, Any]) -> str:
        bad = " [red](invalid)[/]" if pipeline.get("problems") else ""
        return f"[b]{escape(str(pipeline['name']))}[/]{bad}\n[dim]{escape(str(pipeline.get('description', '')))}[/]"

    async def _show(self, name: str) -> None:
        pipeline = self.catalog.get(name)
        if pipeline is None or name == self.selected:
            return
        self.selected = name
        steps = " → ".join(str(s) for s in pipeline.get("steps", []))
        problems = "\n".join(f"[red]{escape(str(p))}[/]" for p in pipeline.get("problems", []))
        about = f"[b]{escape(name)}[/] [dim](instance: {escape(str(pipeline.get('instance', 'none')))})[/]"
        self.query_one("#pipeline-about", Static).update("\n".join(
            part for part in (about, escape(str(pipeline.get("description", ""))), f"[dim]{escape(steps)}[/]",
                              problems) if part))
        await self.query_one(ParamsForm).set_params(pipeline.get("params") or {})

    # --- handlers --------------------------------------------------------------

    @on(OptionList.OptionHighlighted, "#pipeline-list")
    async def _highlighted(self, event: OptionList.OptionHighlighted) -> None:
        if event.option.id is not None:
            await self._show(event.option.id)

    @on(Button.Pressed, "#launch")
    def _launch_pressed(self) -> None:
        self.action_launch()

    @on(Input.Submitted)
    def _submitted(self, event: Input.Submitted) -> None:
        event.stop()
        self.action_launch()

    # --- actions ---------------------------------------------------------------

    def action_reload(self) -> None:
        """Read the catalog and the fleet again."""
        self.selected = None
        self._load()

    def action_launch(self) -> None:
        """Check the params and start one run per selected node."""
        pipeline = self.catalog.get(self.selected or "")
        if pipeline is None:
            self.notify("pick a pipeline first", severity="warning")
            return
        if pipeline.get("problems"):
            self.notify("this pipeline file is invalid; fix it on the hub", severity="error")
            return
        nodes = list(self.query_one("#node-list", SelectionList).selected)
        params = self.query_one(ParamsForm).values()
        if params is None:
            self.notify("some params are wrong (see the form)", severity="error")
            return
        if not nodes:
            self.notify("select one or more nodes (space)", severity="warning")
            return
        instance_id = self.query_one("#instance-id", Input).value.strip() or None
        self._start_runs(str(pipeline["name"]), [str(n) for n in nodes], params, instance_id)

    @work(exclusive=True, group="pipelines-launch")
    async def _start_runs(self, pipeline: str, nodes: list[str], params: dict[str, Any],
                          instance_id: str | None) -> None:
        client = (await hub(self))
        started: list[str] = []
        for node_id in nodes:
            try:
                run = await client.start_run(node_id, pipeline, params, instance_id)
            except HubUnavailableError as exc:
                self.notify(f"{node_id}: {exc.message}", title=f"{pipeline} not started", severity="error")
                continue
            started.append(str(run["id"]))
        if not started:
            return
        if len(started) > 1:
            self.notify(", ".join(started), title=f"{len(started)} runs of {pipeline} started")
        await self.app.push_screen(RunScreen(started[0]))
