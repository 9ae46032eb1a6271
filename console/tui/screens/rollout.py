"""RolloutScreen: one key installs (or removes) the agent on the chosen nodes over SSH, live.

Pick nodes (those the hub can reach over SSH) or "all without an agent" (`a`), press `enter`/`i`
(install or upgrade) or `u` (uninstall) → a confirmation with the hosts and the version → the
rollout starts (`StartRollout`) and each host's steps show live (`WatchRollout`) → a summary. A host
refused because its SSH host key is unknown shows the key's fingerprint; `t` trusts it and retries
those hosts. A hub without rollouts shows "not available on this hub".
"""

from __future__ import annotations

import re
from typing import Any, ClassVar

from rich.markup import escape
from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.screen import Screen
from textual.widgets import DataTable, Footer, SelectionList, Static

from console.tui.client import HubUnavailableError, NotAvailable
from console.tui.support import fleet_snapshot as _fleet
from console.tui.support import hub, state_name, state_style
from console.tui.widgets.confirm import ConfirmScreen

__all__ = ["NOT_AVAILABLE", "RolloutScreen"]

NOT_AVAILABLE = "rollouts are not available on this hub"
_SYMBOLS = {"pending": ("·", "dim"), "running": ("●", "bold cyan"), "succeeded": ("✓", "green"),
            "failed": ("✗", "bold red"), "skipped": ("-", "dim"), "cancelled": ("⊘", "yellow")}
_UNKNOWN_KEY = re.compile(r"host key .*(not known|unknown)", re.IGNORECASE)


def unknown_host_key(host: dict[str, Any]) -> bool:
    """The host was refused because the hub does not know its SSH host key."""
    return bool(_UNKNOWN_KEY.search(str(host.get("error") or "")))


def _step_cell(step: dict[str, Any]) -> Text:
    symbol, style = _SYMBOLS.get(state_name(step.get("state")), ("?", ""))
    return Text(symbol, style=style, justify="center")


class RolloutScreen(Screen[None]):
    """Nodes to roll out to, the live progress per host and step, the summary."""

    DEFAULT_CSS = """
    RolloutScreen {
        & #rollout-nodes { height: 1fr; max-height: 40%; border: round $primary; }
        & #rollout-status { height: auto; padding: 0 1; background: $panel; }
        & #rollout-keys { height: auto; padding: 0 1; color: $warning; display: none; }
        & #rollout-keys.-shown { display: block; }
        & #rollout-hosts { height: 1fr; }
        & #rollout-summary { height: auto; padding: 0 1; }
    }
    """

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("enter", "start('install')", "Install", priority=True),
        Binding("i", "start('install')", "Install/upgrade"),
        Binding("u", "start('uninstall')", "Uninstall"),
        Binding("a", "toggle_all", "All without agent"),
        Binding("t", "trust", "Trust host keys"),
    ]

    def __init__(self, name: str | None = None, id: str | None = None) -> None:
        super().__init__(name=name, id=id)
        self.nodes: dict[str, dict[str, Any]] = {}
        """Nodes with SSH access, by id."""
        self.all_without_agent = False
        self.version = ""
        """The hub's version: the agent version a rollout installs."""
        self.rollout: dict[str, Any] = {}
        self.action = "install"
        self.host_keys: dict[str, dict[str, Any]] = {}
        """Hosts refused for an unknown host key → the key they present (`fingerprint`, `host`, `port`)."""
        self._steps: list[str] = []

    def compose(self) -> ComposeResult:
        yield SelectionList[str](id="rollout-nodes")
        yield Static("loading nodes…", id="rollout-status")
        yield Static(id="rollout-keys")
        yield DataTable[str | Text](id="rollout-hosts", cursor_type="row")
        yield Static(id="rollout-summary")
        yield Footer()

    def on_mount(self) -> None:
        self.query_one("#rollout-nodes").border_title = "nodes with SSH access (space: select)"
        self._load()

    # --- loading ---------------------------------------------------------------

    @work(exclusive=True, group="rollout-load")
    async def _load(self) -> None:
        client = await hub(self)
        try:
            nodes = await _fleet(client)
            self.version = await client.version()
        except HubUnavailableError as exc:
            self.notify(exc.message, title="rollout", severity="error")
            return
        self.nodes = {str(n["id"]): n for n in nodes if n.get("ssh")}
        choices = self.query_one("#rollout-nodes", SelectionList)
        choices.clear_options()
        choices.add_options([(self._node_label(n), key) for key, n in self.nodes.items()])
        self._show_status()

    @staticmethod
    def _node_label(node: dict[str, Any]) -> str:
        agent = (node.get("hardware") or {}).get("agent") or {}
        version = f"agent {agent['version']}" if agent.get("version") else "no agent"
        ssh = node.get("ssh") or {}
        return (f"{escape(str(node['id']))}  [dim]{escape(str(ssh.get('user', 'root')))}@"
                f"{escape(str(ssh.get('host', '?')))}:{ssh.get('port', 22)} · {escape(version)} · "
                f"{'online' if node.get('online') else 'offline'}[/]")

    def _show_status(self, extra: str = "") -> None:
        chosen = ("[b]all nodes without an agent[/]" if self.all_without_agent
                  else f"{len(self.selected)} of {len(self.nodes)} nodes selected")
        text = f"{chosen} · version {escape(self.version or '?')} · enter/i install, u uninstall, a all"
        self.query_one("#rollout-status", Static).update(f"{text}\n{extra}" if extra else text)

    @property
    def selected(self) -> list[str]:
        return [str(value) for value in self.query_one("#rollout-nodes", SelectionList).selected]

    # --- actions ---------------------------------------------------------------

    def action_toggle_all(self) -> None:
        """Switch between the selected nodes and every node without an agent."""
        self.all_without_agent = not self.all_without_agent
        self._show_status()

    def action_start(self, action: str) -> None:
        """Confirm the hosts and the version, then start the rollout."""
        if self.rollout and not self._finished:
            self.notify("a rollout is running", severity="warning")
            return
        nodes = [] if self.all_without_agent else self.selected
        if not nodes and not self.all_without_agent:
            self.notify("select nodes (space) or press a for all without an agent", severity="warning")
            return
        hosts = ("every node with SSH access and no agent online" if self.all_without_agent
                 else "\n".join(f"  {n} ({(self.nodes[n].get('ssh') or {}).get('host', '?')})" for n in nodes))
        verb = "Install agent" if action == "install" else "Uninstall agent"
        message = f"{verb} {self.version or ''} on:\n{hosts}" if action == "install" else f"{verb} on:\n{hosts}"

        def confirmed(yes: bool | None) -> None:
            if yes:
                self._start(action, nodes)

        self.app.push_screen(ConfirmScreen(verb, message, confirm=verb), confirmed)

    def action_trust(self) -> None:
        """Trust the host keys shown and retry those hosts."""
        if not self.host_keys:
            self.notify("no host key to trust", severity="warning")
            return
        self._trust_and_retry(dict(self.host_keys))

    @property
    def _finished(self) -> bool:
        return state_name(self.rollout.get("state")) in ("succeeded", "failed", "cancelled")

    # --- workers ---------------------------------------------------------------

    @work(exclusive=True, group="rollout-run")
    async def _start(self, action: str, nodes: list[str]) -> None:
        client = await hub(self)
        self.action = action
        try:
            started = await client.start_rollout(nodes=nodes or None, all_without_agent=not nodes, action=action)
            self._show_rollout(started)
            async for rollout in client.watch_rollout(str(started["id"])):
                self._show_rollout(rollout)
        except NotAvailable:
            self._show_status(f"[b red]{NOT_AVAILABLE}[/]")
            self.notify(NOT_AVAILABLE, severity="error")
            return
        except HubUnavailableError as exc:
            self.notify(exc.message, title="rollout", severity="error")
            return
        await self._ask_host_keys()

    @work(exclusive=True, group="rollout-trust")
    async def _trust_and_retry(self, keys: dict[str, dict[str, Any]]) -> None:
        client = await hub(self)
        trusted: list[str] = []
        for node_id, key in keys.items():
            try:
                await client.trust_host_key(node_id, str(key.get("fingerprint", "")))
            except HubUnavailableError as exc:
                self.notify(f"{node_id}: {exc.message}", title="host key not trusted", severity="error")
                continue
            trusted.append(node_id)
            self.host_keys.pop(node_id, None)
        self._show_keys()
        if trusted:
            self.notify(", ".join(trusted), title="host keys trusted; retrying")
            self._start(self.action, trusted)

    async def _ask_host_keys(self) -> None:
        """Fetch the key of each host refused for an unknown host key, and show the prompt."""
        client = await hub(self)
        for host in self.rollout.get("hosts") or []:
            if not unknown_host_key(host):
                continue
            node_id = str(host["node_id"])
            try:
                self.host_keys[node_id] = await client.host_key(node_id)
            except HubUnavailableError as exc:
                self.notify(f"{node_id}: {exc.message}", title="host key", severity="error")
        self._show_keys()

    # --- showing ---------------------------------------------------------------

    def _show_rollout(self, rollout: dict[str, Any]) -> None:
        self.rollout = rollout
        table: DataTable[str | Text] = self.query_one("#rollout-hosts", DataTable)
        hosts = rollout.get("hosts") or []
        steps = [str(s.get("name")) for s in (hosts[0].get("steps") or [])] if hosts else []
        if steps != self._steps or table.row_count != len(hosts):
            self._steps = steps
            table.clear(columns=True)
            for column in ("node", "host", "version", *steps, "result", "time", "message"):
                table.add_column(column, key=column)
            for host in hosts:
                table.add_row(*self._cells(host).values(), key=str(host["node_id"]))
        else:
            for host in hosts:
                for column, value in self._cells(host).items():
                    table.update_cell(str(host["node_id"]), column, value)
        self._show_summary()

    def _cells(self, host: dict[str, Any]) -> dict[str, str | Text]:
        steps = {str(s.get("name")): s for s in host.get("steps") or []}
        running = next((s for s in steps.values() if state_name(s.get("state")) == "running"), None)
        message = str(host.get("error") or (running or {}).get("message") or "")
        versions = f"{host.get('from_version') or '-'} → {host.get('to_version') or '-'}"
        result = str(host.get("result") or "")
        cells: dict[str, str | Text] = {"node": str(host["node_id"]), "host": str(host.get("host", "")),
                                        "version": versions}
        for name in self._steps:
            cells[name] = _step_cell(steps.get(name, {}))
        cells["result"] = Text(result or "…", style="bold red" if host.get("error") else "green")
        cells["time"] = f"{float(host.get('duration_s') or 0):.1f}s"
        cells["message"] = message
        return cells

    def _show_summary(self) -> None:
        rollout, state = self.rollout, state_name(self.rollout.get("state"))
        head = (f"rollout {escape(str(rollout.get('id', '')))} · {escape(str(rollout.get('action', '')))} "
                f"{escape(str(rollout.get('version') or ''))} · [{state_style(state) or 'default'}]{state}[/]")
        lines = [head]
        if self._finished:
            counts: dict[str, int] = {}
            for host in rollout.get("hosts") or []:
                result = str(host.get("result") or "unknown")
                counts[result] = counts.get(result, 0) + 1
            lines.append("summary: " + (", ".join(f"{n} {r}" for r, n in sorted(counts.items())) or "no hosts"))
        if rollout.get("error"):
            lines.append(f"[red]{escape(str(rollout['error']))}[/]")
        self.query_one("#rollout-summary", Static).update("\n".join(lines))

    def _show_keys(self) -> None:
        prompt = self.query_one("#rollout-keys", Static)
        lines = [f"{escape(node_id)} ({escape(str(key.get('host', '?')))}:{key.get('port', 22)}) presents an "
                 f"unknown host key [b]{escape(str(key.get('fingerprint', '?')))}[/]"
                 for node_id, key in self.host_keys.items()]
        if lines:
            lines.append("press [b]t[/] to trust these keys and retry those hosts")
        prompt.update("\n".join(lines))
        prompt.set_class(bool(lines), "-shown")
