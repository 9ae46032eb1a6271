"""InstancesScreen: every instance (node, game, version, state, ports, uptime) and what to do with one.

`s` stops its container, `R` restarts it, `x` removes the instance (the stop pipeline; after a
confirmation), `n` launches a new one (the hub places it), `l` opens its log. The table is read
again after each action and on every change of a run an action started (`WatchRun`); nothing polls.
Rows are keyed by instance id and only changed cells are updated.
"""

from __future__ import annotations

from typing import Any, ClassVar

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Static

from console.tui.client import HubUnavailableError
from console.tui.screens.launch import LaunchScreen
from console.tui.screens.logs import LogsScreen
from console.tui.support import as_datetime, duration, hub, now, state_name, state_style
from console.tui.widgets.confirm import ConfirmScreen

__all__ = ["COLUMNS", "InstancesScreen"]

COLUMNS = ("id", "node", "game", "version", "state", "ports", "uptime")


def _ports(instance: dict[str, Any]) -> str:
    shown = []
    for port in instance.get("ports") or []:
        host = port.get("host_port") or "?"
        shown.append(f"{host}→{port.get('container_port', '?')}/{port.get('protocol', 'tcp')}")
    return " ".join(shown) or "-"


class InstancesScreen(Screen[None]):
    """The instances table and its actions."""

    DEFAULT_CSS = """
    InstancesScreen {
        & #instances-summary { height: 1; padding: 0 1; background: $panel; }
        & DataTable { height: 1fr; }
    }
    """

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("s", "stop", "Stop"),
        Binding("R", "restart", "Restart"),
        Binding("x", "remove", "Remove"),
        Binding("n", "launch", "Launch"),
        Binding("l", "logs", "Logs"),
        Binding("f5", "refresh", "Refresh"),
    ]

    def __init__(self, node_id: str | None = None, name: str | None = None, id: str | None = None) -> None:
        super().__init__(name=name, id=id)
        self.node_id = node_id
        """Only this node's instances (None: all)."""
        self.instances: dict[str, dict[str, Any]] = {}

    def compose(self) -> ComposeResult:
        yield Static("instances · loading…", id="instances-summary")
        table: DataTable[str | Text] = DataTable(cursor_type="row", zebra_stripes=True)
        for column in COLUMNS:
            table.add_column(column, key=column)
        yield table
        yield Footer()

    def on_mount(self) -> None:
        self.query_one(DataTable).focus()
        self.action_refresh()

    # --- the table -------------------------------------------------------------

    @work(exclusive=True, group="instances-load")
    async def _load(self) -> None:
        try:
            found = await (await hub(self)).instances(self.node_id)
        except HubUnavailableError as exc:
            self.notify(exc.message, title="instances", severity="error")
            return
        self._show(found)

    def _row(self, instance: dict[str, Any]) -> dict[str, str | Text]:
        state = state_name(instance.get("state"))
        started = as_datetime(instance.get("started_at"))
        uptime = duration((now(self) - started).total_seconds()) if started and state == "running" else "-"
        return {"id": str(instance["id"]), "node": str(instance.get("node_id", "")),
                "game": str(instance.get("game") or "-"), "version": str(instance.get("game_version") or "-"),
                "state": Text(state, style=state_style(state)), "ports": _ports(instance), "uptime": uptime}

    def _show(self, found: list[dict[str, Any]]) -> None:
        table: DataTable[str | Text] = self.query_one(DataTable)
        fresh = {str(i["id"]): i for i in found}
        for gone in [key for key in self.instances if key not in fresh]:
            table.remove_row(gone)
        for key, instance in fresh.items():
            row = self._row(instance)
            if key not in self.instances:
                table.add_row(*row.values(), key=key)
                continue
            old = self._row(self.instances[key])
            for column, value in row.items():
                if value != old[column]:
                    table.update_cell(key, column, value)
        self.instances = fresh
        running = sum(1 for i in fresh.values() if state_name(i.get("state")) == "running")
        self.query_one("#instances-summary", Static).update(f"instances · {len(fresh)} · {running} running")

    @property
    def current(self) -> str | None:
        """The id of the instance under the cursor."""
        table: DataTable[str | Text] = self.query_one(DataTable)
        if not table.row_count:
            return None
        key = table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value
        return key if key in self.instances else None

    # --- workers ---------------------------------------------------------------

    @work(group="instances-action")
    async def _act(self, instance_id: str, action: str) -> None:
        client = await hub(self)
        try:
            if action == "remove":
                answer = await client.stop_instance(instance_id)
            else:
                answer = await client.instance_action(instance_id, action)
        except HubUnavailableError as exc:
            self.notify(exc.message, title=f"{action} {instance_id}", severity="error")
            return
        self.notify(f"{action} {instance_id}: requested")
        self._after(answer)

    def _after(self, answer: dict[str, Any] | None) -> None:
        """Read the table again, and follow the run the hub started (if any)."""
        self._load()
        run = (answer or {}).get("run")
        run_id = (answer or {}).get("run_id") or (run.get("id") if isinstance(run, dict) else None)
        if run_id:
            self._follow(str(run_id))

    @work(group="instances-follow")
    async def _follow(self, run_id: str) -> None:
        """Read the table again on every change of the run (it moves the instance through its states)."""
        try:
            async for _run in (await hub(self)).watch_run(run_id):
                self._load()
        except HubUnavailableError as exc:
            self.log.warning(f"watching run {run_id} failed: {exc.message}")
        self._load()

    # --- actions ---------------------------------------------------------------

    def action_refresh(self) -> None:
        """Read the instances again."""
        self._load()

    def action_stop(self) -> None:
        """Stop the container of the instance under the cursor."""
        if (instance_id := self._need_current()) is not None:
            self._act(instance_id, "stop")

    def action_restart(self) -> None:
        """Restart the container of the instance under the cursor."""
        if (instance_id := self._need_current()) is not None:
            self._act(instance_id, "restart")

    def action_remove(self) -> None:
        """Remove the instance under the cursor (its stop pipeline), after a confirmation."""
        instance_id = self._need_current()
        if instance_id is None:
            return
        node = self.instances[instance_id].get("node_id", "")

        def confirmed(yes: bool | None) -> None:
            if yes:
                self._act(instance_id, "remove")

        self.app.push_screen(ConfirmScreen("Remove the instance", f"Stop and remove {instance_id} on {node}?",
                                           confirm="Remove"), confirmed)

    def action_launch(self) -> None:
        """Launch an instance of a game card version."""
        self._open_launch()

    @work(exclusive=True, group="instances-launch")
    async def _open_launch(self) -> None:
        try:
            cards = await (await hub(self)).gamecards()
        except HubUnavailableError as exc:
            self.notify(exc.message, title="game cards", severity="error")
            return
        if not cards:
            self.notify("the hub has no game cards", severity="warning")
            return
        self.app.push_screen(LaunchScreen(cards), self._launched)

    def _launched(self, answer: dict[str, Any] | None) -> None:
        if answer is None:
            return
        instance = answer.get("instance") or {}
        self.notify(f"{instance.get('id', '?')} on {instance.get('node_id', '?')}", title="launched")
        self._after(answer)

    def action_logs(self) -> None:
        """The log of the instance under the cursor."""
        if (instance_id := self._need_current()) is not None:
            self.app.push_screen(LogsScreen(instance_id=instance_id))

    def _need_current(self) -> str | None:
        instance_id = self.current
        if instance_id is None:
            self.notify("no instance selected", severity="warning")
        return instance_id
