"""One node: inventory, labels, status with its history, metric sparklines, instances, actions.

The history of the sparklines comes from `client.metrics()`; after that the
fleet screen's watch stream (through `app.live`) adds each new sample, so this
screen never polls. Actions ask first (a reason, a confirmation) and report
the hub's answer as a notification.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any, ClassVar, TypeVar

from textual import work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Header, Label

from console.tui.app import gamenode_app
from console.tui.fmt import human_bytes, labels_text, percent, rate, status_text
from console.tui.support import as_datetime
from console.tui.widgets.confirm import ConfirmScreen
from console.tui.widgets.message import MessageScreen
from console.tui.widgets.metric_spark import MetricSpark
from console.tui.widgets.node_inventory import NodeInventory
from console.tui.widgets.prompt import PromptScreen

__all__ = ["NodeScreen", "parse_label_edit"]

T = TypeVar("T")

LOGS_SCREEN = "console.tui.screens.logs:LogsScreen"
HISTORY_SHOWN = 50
"""Status changes listed (newest first)."""


def parse_label_edit(text: str) -> tuple[dict[str, str], list[str]]:
    """`k=v,k2-,k3` → ({"k": "v", "k3": ""}, ["k2"]); ValueError for an empty key."""
    set_: dict[str, str] = {}
    remove: list[str] = []
    for item in (part.strip() for part in text.split(",")):
        if not item:
            continue
        removing = "=" not in item and item.endswith("-")
        key, _, value = item.removesuffix("-").partition("=") if removing else item.partition("=")
        if not key.strip():
            raise ValueError(f"a label needs a key: {item!r}")
        if removing:
            remove.append(key.strip())
        else:
            set_[key.strip()] = value.strip()
    return set_, remove


def _sample_values(sample: dict[str, Any]) -> dict[str, float | None]:
    gpus = sample.get("gpus") or []
    nets = sample.get("nets") or []
    return {
        "cpu": sample.get("cpu_percent"),
        "mem": sample.get("memory_percent"),
        "gpu": sum(g.get("utilization_percent", 0.0) for g in gpus) / len(gpus) if gpus else None,
        "rx": sum(n.get("rx_bytes_per_s", 0.0) for n in nets) if nets else None,
        "tx": sum(n.get("tx_bytes_per_s", 0.0) for n in nets) if nets else None,
    }


def _when(value: Any) -> str:
    at = as_datetime(value)
    return at.strftime("%Y-%m-%d %H:%M:%S") if at else "-"


class NodeScreen(Screen[None]):
    """The detail of one node; `m` maintenance, `e` labels, `d` delete, `t` new agent token, `l` its logs."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("m", "maintenance", "Maintenance on/off"),
        Binding("e", "edit_labels", "Labels"),
        Binding("d", "delete", "Delete"),
        Binding("t", "token", "New token"),
        Binding("l", "logs", "Logs"),
        Binding("ctrl+l", "reload", "Reload", show=False),
    ]

    def __init__(self, node_id: str) -> None:
        super().__init__()
        self.node_id = node_id
        self.node: dict[str, Any] | None = None
        self._last_sample: datetime | None = None
        self._unsubscribe: Callable[[], None] | None = None

    def compose(self) -> ComposeResult:
        yield Header()
        with Horizontal(id="node-top"):
            with VerticalScroll(id="node-info"):
                yield NodeInventory(id="inventory")
                yield Label("Status history", classes="section")
                yield DataTable(id="history", cursor_type="row", zebra_stripes=True)
            with Vertical(id="node-charts"):
                yield Label("Metrics", classes="section")
                yield MetricSpark("CPU", percent, id="spark-cpu")
                yield MetricSpark("Memory", percent, id="spark-mem")
                yield MetricSpark("GPU", percent, id="spark-gpu")
                yield MetricSpark("Net rx", rate, id="spark-rx")
                yield MetricSpark("Net tx", rate, id="spark-tx")
        yield Label("Instances", classes="section")
        yield DataTable(id="instances", cursor_type="row", zebra_stripes=True)
        yield Footer()

    def on_mount(self) -> None:
        self.title = "gamenode"
        self.sub_title = f"node {self.node_id}"
        self.query_one("#history", DataTable).add_columns("AT", "FROM", "TO", "BY", "REASON")
        self.query_one("#instances", DataTable).add_columns("ID", "GAME", "VERSION", "STATE", "PORTS", "CPU",
                                                            "MEMORY", "GPU", "STARTED")
        self._unsubscribe = gamenode_app(self).live.subscribe(self.node_id, self._on_live)
        self.query_one("#instances", DataTable).focus()
        self._load()

    def on_unmount(self) -> None:
        if self._unsubscribe is not None:
            self._unsubscribe()

    # --- loading ------------------------------------------------------------------

    async def _call(self, what: str, call: Callable[[], Awaitable[T]]) -> T | None:
        """The answer of `call()`, or None after a notification saying what failed."""
        try:
            return await call()
        except Exception as exc:
            self.notify(f"{what}: {exc}", title=f"node {self.node_id}", severity="error")
            return None

    @work(exclusive=True, group="node-load")
    async def _load(self) -> None:
        """Fetch the node, its history, its metrics history and its instances."""
        client = await gamenode_app(self).connected()
        node = await self._call("reading the node failed", lambda: client.get_node(self.node_id))
        if node is None:
            return
        self._show_node(node)
        history = await self._call("reading its status history failed", lambda: client.node_history(self.node_id))
        self._show_history(history or [])
        samples = await self._call("reading its metrics failed", lambda: client.metrics(self.node_id))
        self._add_samples(samples or [])
        instances = await self._call("reading its instances failed", lambda: client.instances(self.node_id))
        self._show_instances(instances or [])

    def _on_live(self, node: dict[str, Any] | None) -> None:
        if not self.query(NodeInventory):
            return  # popped: its widgets are gone before on_unmount unsubscribes
        if node is None:
            self.notify(f"node {self.node_id} was deleted", severity="warning")
            self.sub_title = f"node {self.node_id} (deleted)"
            return
        previous = self.node
        self._show_node(node)
        if node.get("metrics"):
            self._add_samples([node["metrics"]])
        if previous is not None and previous.get("status") != node.get("status"):
            self._reload_history()

    @work(exclusive=True, group="node-history")
    async def _reload_history(self) -> None:
        client = gamenode_app(self).client
        history = await self._call("reading its status history failed", lambda: client.node_history(self.node_id))
        self._show_history(history or [])

    # --- drawing ------------------------------------------------------------------

    def _show_node(self, node: dict[str, Any]) -> None:
        self.node = node
        self.query_one(NodeInventory).show(node)

    def _show_history(self, changes: list[dict[str, Any]]) -> None:
        table = self.query_one("#history", DataTable)
        table.clear()
        for change in reversed(changes[-HISTORY_SHOWN:]):
            table.add_row(_when(change.get("at")), change.get("from_status") or "-",
                          status_text(str(change.get("to_status", ""))), change.get("by", ""),
                          change.get("reason", ""))

    def _add_samples(self, samples: list[dict[str, Any]]) -> None:
        """Append the samples newer than the last one shown."""
        fresh = []
        for sample in samples:
            at = as_datetime(sample.get("at"))
            if at is not None and (self._last_sample is None or at > self._last_sample):
                fresh.append(_sample_values(sample))
                self._last_sample = at
        if not fresh:
            return
        for key in ("cpu", "mem", "gpu", "rx", "tx"):
            self.query_one(f"#spark-{key}", MetricSpark).extend(values[key] for values in fresh)

    def _show_instances(self, instances: list[dict[str, Any]]) -> None:
        table = self.query_one("#instances", DataTable)
        table.clear()
        for inst in instances:
            ports = ", ".join(f"{p.get('host_port')}→{p.get('container_port')}/{p.get('protocol', 'tcp')}"
                              for p in inst.get("ports") or [])
            res = inst.get("resources") or {}
            table.add_row(inst.get("id", ""), inst.get("game") or "-", inst.get("game_version") or "-",
                          inst.get("state", ""), ports or "-", f"{res.get('cpu', 0):g}",
                          human_bytes(res.get("memory_mb", 0) * 2**20), str(res.get("gpu", 0)),
                          _when(inst.get("started_at")), key=inst.get("id"))

    # --- actions ------------------------------------------------------------------

    def action_maintenance(self) -> None:
        """Put the node into maintenance (a reason is needed), or take it out."""
        if self.node is None:
            return
        entering = self.node.get("status") != "maintenance"
        target = "maintenance" if entering else ("online" if self.node.get("online") else "offline")
        title = f"Maintenance for {self.node_id}" if entering else f"End maintenance of {self.node_id} (→ {target})"
        prompt = PromptScreen(title, "Why? (recorded in the status history)", placeholder="reason",
                              required=entering)

        def answered(reason: str | None) -> None:
            if reason is not None:
                self._set_status(target, reason)

        self.app.push_screen(prompt, answered)

    @work(group="node-action")
    async def _set_status(self, status: str, reason: str) -> None:
        client = gamenode_app(self).client
        node = await self._call(f"setting status {status} failed", lambda: client.set_status(self.node_id, status,
                                                                                             reason))
        if node is not None:
            self._show_node(node)
            self.notify(f"{self.node_id} is {node.get('status', status)}")
            self._reload_history()

    def action_edit_labels(self) -> None:
        """Change labels: `k=v` sets, `k-` removes."""
        if self.node is None:
            return
        current = labels_text(self.node.get("labels") or {}) or "none"
        prompt = PromptScreen(f"Labels of {self.node_id}", f"now: {current}\nk=v sets a label, k- removes one",
                              placeholder="region=eu,spot-")

        def answered(text: str | None) -> None:
            if text is None:
                return
            try:
                set_, remove = parse_label_edit(text)
            except ValueError as exc:
                self.notify(str(exc), severity="error")
                return
            self._update_labels(set_, remove)

        self.app.push_screen(prompt, answered)

    @work(group="node-action")
    async def _update_labels(self, set_: dict[str, str], remove: list[str]) -> None:
        client = gamenode_app(self).client
        node = await self._call("changing labels failed", lambda: client.update_labels(self.node_id, set_, remove))
        if node is not None:
            self._show_node(node)
            self.notify(f"labels of {self.node_id} changed")

    def action_delete(self) -> None:
        """Delete the node (after a confirmation)."""
        confirm = ConfirmScreen(f"Delete {self.node_id}?",
                                "The node, its history and its agent credential are removed. "
                                "A node with live instances cannot be deleted.", confirm="Delete")

        def answered(yes: bool | None) -> None:
            if yes:
                self._delete()

        self.app.push_screen(confirm, answered)

    @work(group="node-action")
    async def _delete(self) -> None:
        client = gamenode_app(self).client
        done = await self._call("deleting failed", lambda: self._deleted(client.delete_node(self.node_id)))
        if done:
            self.notify(f"{self.node_id} deleted")
            self.dismiss_screen()

    @staticmethod
    async def _deleted(call: Awaitable[None]) -> bool:
        await call
        return True

    def dismiss_screen(self) -> None:
        """Leave this screen (when it is on top)."""
        if self.app.screen is self:
            self.app.pop_screen()

    def action_token(self) -> None:
        """Issue a new agent token (the old one stops working) and show it once."""
        confirm = ConfirmScreen(f"New agent token for {self.node_id}?",
                                "The current token stops working at once, and a connected agent is cut off "
                                "until it is given the new one.", confirm="Issue")

        def answered(yes: bool | None) -> None:
            if yes:
                self._issue_token()

        self.app.push_screen(confirm, answered)

    @work(group="node-action")
    async def _issue_token(self) -> None:
        client = gamenode_app(self).client
        token = await self._call("issuing a token failed", lambda: client.issue_token(self.node_id))
        if token is not None:
            self.app.push_screen(MessageScreen(
                f"Agent token for {self.node_id}",
                "Shown only this once: the hub keeps only its hash. Give it to the agent with "
                f"--token, e.g. gamenode agent --node-id {self.node_id} --token TOKEN.", token))

    def action_logs(self) -> None:
        """The logs of this node."""
        gamenode_app(self).open_screen(LOGS_SCREEN, node_id=self.node_id)

    def action_reload(self) -> None:
        """Fetch everything again."""
        self._last_sample = None
        for spark in self.query(MetricSpark):
            spark.values.clear()
        self._load()
