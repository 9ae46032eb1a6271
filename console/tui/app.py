"""The operator console: a Textual app over one `HubClient`.

    app = GamenodeApp(lambda: HubClient("127.0.0.1:7070"))
    app.run()

The client is created and connected in `on_mount` (grpc.aio channels belong to
the running loop); a failed connect is a notification and `ctrl+r` tries
again. The fleet screen is home, always at the bottom of the stack; the other
screens (`SCREENS`, by import string so they load lazily) are pushed on top of
it, and `q` / `escape` go back (`q` on the fleet screen quits). `:` opens the
command palette (every screen, every node), `?` the keys of the current screen.
"""

from __future__ import annotations

import asyncio
import importlib
from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING, Any, ClassVar, cast

from textual import work
from textual.app import App
from textual.binding import Binding, BindingType
from textual.screen import Screen

from console.models import utcnow
from console.tui.commands import GamenodeCommands
from console.tui.live_nodes import LiveNodes

if TYPE_CHECKING:
    from textual.dom import DOMNode

    from console.tui.client import HubClient

__all__ = ["NODE_SCREEN", "SCREENS", "GamenodeApp", "gamenode_app"]

SCREENS: dict[str, str] = {
    "fleet": "console.tui.screens.fleet:FleetScreen",
    "pipelines": "console.tui.screens.pipelines:PipelinesScreen",
    "instances": "console.tui.screens.instances:InstancesScreen",
    "logs": "console.tui.screens.logs:LogsScreen",
    "rollout": "console.tui.screens.rollout:RolloutScreen",
}
"""The screens the keys and the palette jump to, by `module:Class`."""
NODE_SCREEN = "console.tui.screens.node:NodeScreen"


def gamenode_app(node: DOMNode) -> GamenodeApp:
    """The `GamenodeApp` that `node` belongs to (typed)."""
    return cast("GamenodeApp", node.app)


def load_screen_class(path: str) -> type[Screen[Any]]:
    """The screen class named by `module:Class`; ImportError (or AttributeError) when it is not there yet."""
    module_name, _, class_name = path.partition(":")
    screen_class = getattr(importlib.import_module(module_name), class_name)
    if not (isinstance(screen_class, type) and issubclass(screen_class, Screen)):
        raise TypeError(f"{path} is not a Screen")
    return screen_class


class GamenodeApp(App[None]):
    """k9s-like console: live fleet, node detail, pipelines, instances, logs, rollout."""

    CSS_PATH = "app.tcss"
    TITLE = "gamenode"
    COMMAND_PALETTE_BINDING = "colon"
    COMMAND_PALETTE_DISPLAY = ":"
    COMMANDS: ClassVar[set[Any]] = {GamenodeCommands}

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("question_mark", "help", "Help", key_display="?"),
        Binding("q", "go_back", "Back/Quit"),
        Binding("escape", "go_back(False)", "Back", show=False),
        Binding("f", "show('fleet')", "Fleet"),
        Binding("p", "show('pipelines')", "Pipelines"),
        Binding("i", "show('instances')", "Instances"),
        Binding("l", "show('logs')", "Logs"),
        Binding("r", "show('rollout')", "Rollout"),
        Binding("ctrl+r", "reconnect", "Reconnect", show=False),
    ]

    def __init__(self, client_factory: Callable[[], HubClient], *,
                 clock: Callable[[], datetime] = utcnow, target: str = "") -> None:
        """`client_factory` makes the (unconnected) client in `on_mount`; `clock` is "now" for ages."""
        super().__init__()
        self._client_factory = client_factory
        self._client: HubClient | None = None
        self._connected = asyncio.Event()
        self.clock = clock
        """The current time for "last seen" and ages (tests freeze it)."""
        self.target = target
        """Where the hub is, for messages (`HOST:PORT`, `unix:/path` or "")."""
        self.live = LiveNodes()
        """The latest state of every node, as the fleet screen's watch stream delivers it."""

    @property
    def client(self) -> HubClient:
        """The hub client (made in `on_mount`)."""
        if self._client is None:
            raise RuntimeError("the client is made when the app is mounted")
        return self._client

    @property
    def is_connected(self) -> bool:
        return self._connected.is_set()

    async def connected(self) -> HubClient:
        """The client, once it has connected (workers wait for this before their first call)."""
        await self._connected.wait()
        return self.client

    def get_default_screen(self) -> Screen[Any]:
        """The fleet screen: home, always at the bottom of the stack."""
        return self._new_screen(SCREENS["fleet"])

    def on_mount(self) -> None:
        self._client = self._client_factory()
        self._connect()

    async def on_unmount(self) -> None:
        if self._client is not None:
            try:
                await self._client.close()
            except Exception as exc:  # closing is best effort: the app is going away
                self.log.warning(f"closing the hub client failed: {exc}")

    @work(exclusive=True, group="connect")
    async def _connect(self) -> None:
        try:
            await self.client.connect()
        except Exception as exc:
            where = f" at {self.target}" if self.target else ""
            self.notify(f"cannot reach the hub{where}: {exc}  (ctrl+r to retry)", title="Hub unavailable",
                        severity="error", timeout=10)
            return
        self._connected.set()

    # --- navigation ---------------------------------------------------------------

    def open_screen(self, path: str, *args: Any, **kwargs: Any) -> None:
        """Push the screen named by `module:Class`, made with these arguments; a notice when it is not there yet."""
        try:
            screen = self._new_screen(path, *args, **kwargs)
        except (ImportError, AttributeError, TypeError) as exc:
            self.notify(f"{path.rpartition(':')[2]} is not available yet ({exc})", severity="warning")
            return
        self.push_screen(screen)

    def open_node(self, node_id: str) -> None:
        """Push the detail screen of one node."""
        self.open_screen(NODE_SCREEN, node_id)

    def show(self, name: str) -> None:
        """Go to the named screen: back to the fleet, then (for any other) push it on top."""
        while len(self.screen_stack) > 1:
            self.pop_screen()
        if name != "fleet":
            self.open_screen(SCREENS[name])

    def _new_screen(self, path: str, *args: Any, **kwargs: Any) -> Screen[Any]:
        return load_screen_class(path)(*args, **kwargs)

    # --- actions ------------------------------------------------------------------

    def action_show(self, name: str) -> None:
        """Jump to a named screen (`f`, `p`, `i`, `l`, `r`)."""
        if name in SCREENS:
            self.show(name)

    def action_go_back(self, quit_home: bool = True) -> None:
        """Back to the previous screen; on the fleet screen `q` quits (escape does nothing)."""
        if len(self.screen_stack) > 1:
            self.pop_screen()
        elif quit_home:
            self.exit()

    def action_help(self) -> None:
        """List every key of the current screen and the app."""
        from console.tui.screens.help import HelpScreen

        if isinstance(self.screen, HelpScreen):
            return
        self.push_screen(HelpScreen.for_screen(self.screen))

    def action_reconnect(self) -> None:
        """Try to connect to the hub again."""
        if not self.is_connected:
            self._connect()
