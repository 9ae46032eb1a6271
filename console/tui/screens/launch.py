"""LaunchScreen: a modal to launch an instance of a game card version; the hub picks the node.

Dismisses with the hub's answer (`{instance, run_id}`) or None. When nothing fits, the hub's reason
for each node stays on the form (`eu-fra-01: in maintenance`, `us-iad-01: needs 4 CPU, 1.5 free`).
"""

from __future__ import annotations

from typing import Any, ClassVar

from rich.markup import escape
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Label, Select, Static

from console.tui.client import HubUnavailableError
from console.tui.support import hub

__all__ = ["LaunchScreen"]


class LaunchScreen(ModalScreen[dict[str, Any] | None]):
    """Pick a game card, a version and (optionally) a label selector; launch."""

    DEFAULT_CSS = """
    LaunchScreen {
        align: center middle;
        & > Vertical { width: 72; height: auto; border: thick $primary; background: $surface; padding: 1 2; }
        & .title { text-style: bold; margin-bottom: 1; }
        & #launch-reasons { color: $error; height: auto; margin-top: 1; }
        & Horizontal { height: auto; align-horizontal: right; margin-top: 1; }
        & Button { margin-left: 2; }
    }
    """

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "close", "Close"),
        Binding("ctrl+s", "launch", "Launch"),
    ]

    def __init__(self, cards: list[dict[str, Any]]) -> None:
        super().__init__()
        self.cards = {str(card["id"]): card for card in cards}
        self.reasons = ""
        """The hub's refusal, as shown."""

    def compose(self) -> ComposeResult:
        first = next(iter(self.cards), None)
        with Vertical():
            yield Label("Launch an instance", classes="title")
            yield Select([(f"{c.get('name', key)} ({key})", key) for key, c in self.cards.items()],
                         value=first if first is not None else Select.NULL, allow_blank=first is None, id="card")
            yield Select(self._versions(first), allow_blank=True, id="version", prompt="default version")
            yield Input(placeholder="label selector (optional), e.g. region=eu", id="selector")
            yield Static("", id="launch-reasons")
            with Horizontal():
                yield Button("Cancel", id="cancel")
                yield Button("Launch", id="launch", variant="primary")

    def _versions(self, card_id: str | None) -> list[tuple[str, str]]:
        card = self.cards.get(card_id or "", {})
        default = card.get("default_version")
        return [(f"{v['version']}{' (default)' if v['version'] == default else ''}"
                 f"{' deprecated' if v.get('status') == 'deprecated' else ''}", str(v["version"]))
                for v in card.get("versions", [])]

    @on(Select.Changed, "#card")
    def _card_changed(self, event: Select.Changed) -> None:
        card = event.value if isinstance(event.value, str) else None
        self.query_one("#version", Select).set_options(self._versions(card))

    @on(Button.Pressed, "#cancel")
    def _cancel(self) -> None:
        self.dismiss(None)

    @on(Button.Pressed, "#launch")
    @on(Input.Submitted)
    def _launch_pressed(self) -> None:
        self.action_launch()

    def action_close(self) -> None:
        self.dismiss(None)

    def action_launch(self) -> None:
        """Ask the hub to place and start the chosen version."""
        card = self.query_one("#card", Select).value
        if not isinstance(card, str):
            self._show_reasons("pick a game card")
            return
        version = self.query_one("#version", Select).value
        selector = self.query_one("#selector", Input).value.strip() or None
        self._launch(card, version if isinstance(version, str) else None, selector)

    @work(exclusive=True, group="launch")
    async def _launch(self, game: str, version: str | None, selector: str | None) -> None:
        try:
            answer = await (await hub(self)).launch(game, version, selector)
        except HubUnavailableError as exc:
            self._show_reasons(exc.message)
            return
        self.dismiss(answer)

    def _show_reasons(self, text: str) -> None:
        self.reasons = text
        self.query_one("#launch-reasons", Static).update(escape(text.replace("; ", "\n")))
