"""Small helpers shared by the pipeline, run, instance, log and rollout screens.

    await hub(node)          the app's `HubClient`, once it has connected (for workers)
    now(node)                the app's clock (tests freeze it)
    as_datetime(value)       a timestamp from the client (datetime, ISO 8601 text or None) as an aware datetime
    state_name(value)        a run / step / instance / rollout state as a plain lower-case word
    state_style(state)       the colour of that state
    duration(seconds)        `4s`, `2m05s`, `1h02m`
    fleet_snapshot(client)   the nodes of one `WatchNodes` snapshot (the stream is closed after it)
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from textual.dom import DOMNode

    from console.tui.client import HubClient

__all__ = ["FINISHED", "as_datetime", "duration", "fleet_snapshot", "hub", "now", "state_name", "state_style"]

FINISHED = frozenset({"succeeded", "failed", "cancelled", "skipped", "stopped"})
"""States after which nothing changes any more."""

_STYLES = {
    "pending": "dim", "dispatched": "cyan", "running": "bold cyan", "starting": "cyan", "preparing": "cyan",
    "cancelling": "yellow", "stopping": "yellow", "succeeded": "green", "failed": "bold red",
    "cancelled": "yellow", "skipped": "dim", "stopped": "dim",
}


async def hub(node: DOMNode) -> HubClient:
    """The client of the app that `node` belongs to, once it has connected."""
    from console.tui.app import gamenode_app

    return await gamenode_app(node).connected()


def now(node: DOMNode) -> datetime:
    """The app's "now" (its clock; tests freeze it)."""
    clock = getattr(node.app, "clock", None)
    return clock() if callable(clock) else datetime.now(UTC)


def as_datetime(value: Any) -> datetime | None:
    """`value` (a datetime, ISO 8601 text, or nothing) as an aware datetime; None when it is not one."""
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    if isinstance(value, str) and value:
        try:
            parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return None
        return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
    return None


def state_name(value: Any) -> str:
    """`STEP_STATE_RUNNING`, `StepState.RUNNING` or `running` → `running`."""
    text = str(getattr(value, "value", value) or "").lower()
    return text.removeprefix("step_state_").removeprefix("run_state_")


def state_style(state: str) -> str:
    """The Rich style a state is shown in."""
    return _STYLES.get(state_name(state), "")


def duration(seconds: float) -> str:
    """A short human duration: `4s`, `2m05s`, `1h02m`."""
    total = max(int(seconds), 0)
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes:02d}m"
    return f"{minutes}m{secs:02d}s" if minutes else f"{secs}s"


async def fleet_snapshot(client: HubClient, selector: str = "") -> list[dict[str, Any]]:
    """Every node of the first `WatchNodes` snapshot, sorted by id."""
    nodes: dict[str, dict[str, Any]] = {}
    stream: AsyncIterator[Any] = client.watch_nodes(selector)
    try:
        async for batch in stream:
            for node in batch.nodes:
                nodes[str(node.get("id", ""))] = node
            if batch.snapshot_done or not batch.snapshot:
                break
    finally:
        close = getattr(stream, "aclose", None)
        if close is not None:
            await close()
    return [nodes[key] for key in sorted(nodes)]
