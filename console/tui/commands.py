"""The `:` command palette's provider: every screen and every node, to jump to."""

from __future__ import annotations

from functools import partial
from typing import TYPE_CHECKING

from textual.command import DiscoveryHit, Hit, Hits, Provider

if TYPE_CHECKING:
    from console.tui.app import GamenodeApp

__all__ = ["GamenodeCommands"]

_SCREEN_HELP = {
    "fleet": "Every node, live",
    "pipelines": "Pick a pipeline, fill its params, launch it",
    "instances": "Game instances: stop, restart, remove, launch",
    "logs": "Follow and search node, run and instance logs",
    "rollout": "Install or upgrade agents over SSH",
}


class GamenodeCommands(Provider):
    """`fleet`, `pipelines`, ... and `node <id>` for every node the console knows."""

    @property
    def _app(self) -> GamenodeApp:
        from console.tui.app import gamenode_app

        return gamenode_app(self.screen)

    def _commands(self) -> list[tuple[str, str, partial[None]]]:
        """(text, help, callback) of every command."""
        app = self._app
        from console.tui.app import SCREENS

        screens = [(name, _SCREEN_HELP.get(name, ""), partial(app.show, name)) for name in SCREENS]
        nodes = []
        for node_id in app.live.ids():
            node = app.live.get(node_id) or {}
            detail = f"{node.get('name', '')} · {node.get('status', '')} · {node.get('location', '')}"
            nodes.append((f"node {node_id}", detail, partial(app.open_node, node_id)))
        return screens + nodes

    async def discover(self) -> Hits:
        """The screens, then the nodes, before anything is typed."""
        for text, help_text, callback in self._commands():
            yield DiscoveryHit(text, callback, help=help_text)

    async def search(self, query: str) -> Hits:
        """Screens and nodes whose name fuzzily matches `query`."""
        matcher = self.matcher(query)
        for text, help_text, callback in self._commands():
            score = matcher.match(text)
            if score > 0:
                yield Hit(score, matcher.highlight(text), callback, text=text, help=help_text)
