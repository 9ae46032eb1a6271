"""NodeService.set_connected: the agent stream's online flag and the status that follows, in one write."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import pytest

from console.models import GameNode, NodeStatus
from console.service import Services

if TYPE_CHECKING:
    from conftest import FakeClock


def test_connecting_an_offline_node_makes_it_online(
    services: Services, make_node: Callable[..., GameNode], clock: FakeClock
) -> None:
    make_node("n1")
    now = clock.advance(5)
    node = services.nodes.set_connected("n1", True, "agent connected")
    assert node.online and node.last_online == now and node.status == NodeStatus.ONLINE
    change = services.nodes.status_history("n1")[-1]
    assert (change.from_status, change.to_status, change.by, change.reason) == (
        "offline", "online", "hub", "agent connected")
    assert services.nodes.set_connected("n1", True, "again") is node  # nothing changes: nothing written


@pytest.mark.parametrize(("status", "after"), [("online", "offline"), ("ready", "offline"),
                                               ("maintenance", "maintenance")])
def test_disconnecting(services: Services, make_node: Callable[..., GameNode], status: str, after: str) -> None:
    make_node("n1")
    services.nodes.set_connected("n1", True, "agent connected")
    if status != "online":
        services.nodes.update_node_status("n1", status, "because")
    node = services.nodes.set_connected("n1", False, "no heartbeat for 16 s")
    assert not node.online and node.status == after
    last = services.nodes.status_history("n1")[-1]
    assert last.reason == ("no heartbeat for 16 s" if after != status else "because")


def test_maintenance_only_changes_online(services: Services, make_node: Callable[..., GameNode]) -> None:
    make_node("n1", status="maintenance")
    node = services.nodes.set_connected("n1", True, "agent connected")
    assert node.online and node.status == NodeStatus.MAINTENANCE
    assert [c.to_status for c in services.nodes.status_history("n1")] == ["maintenance"]
