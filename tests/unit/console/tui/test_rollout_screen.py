"""RolloutScreen: select → confirm (hosts, version) → live per-host, per-step progress → summary; host keys."""

from __future__ import annotations

import copy
from typing import Any

from fakes import FakeClient, fleet
from textual.widgets import DataTable, SelectionList
from tuihelp import app_for, notified, until

from console.tui.client import NotAvailable
from console.tui.screens.rollout import NOT_AVAILABLE, RolloutScreen
from console.tui.widgets.confirm import ConfirmScreen

STEPS = ["connect", "preflight", "upload", "install", "configure", "switch", "start", "verify", "rollback"]


def ssh_fleet() -> list[dict[str, Any]]:
    nodes = fleet()
    for node in nodes:
        if node["id"] in ("ap-sgp-01", "us-iad-02", "eu-fra-02"):
            node["ssh"] = {"host": f"{node['id']}.example", "port": 22, "user": "root"}
    return nodes


def host(node: str, done: int, result: str = "", error: str = "", failed: bool = False) -> dict[str, Any]:
    states = ["succeeded"] * done + (["failed"] if failed else ["running"]) + ["pending"] * (len(STEPS) - done - 1)
    if result and not failed:
        states = ["succeeded"] * (len(STEPS) - 1) + ["skipped"]
    return {"node_id": node, "host": f"{node}.example:22", "from_version": None, "to_version": "0.3.0",
            "result": result, "error": error, "duration_s": 1.5,
            "steps": [{"name": n, "state": s, "message": "uploading" if s == "running" else ""}
                      for n, s in zip(STEPS, states, strict=True)]}


async def open_rollout(pilot: Any, app: Any) -> RolloutScreen:
    screen = RolloutScreen()
    await app.push_screen(screen)
    await until(pilot, lambda: screen.nodes and screen.version)
    return screen


async def test_only_nodes_with_ssh_are_offered() -> None:
    client = FakeClient(ssh_fleet())
    app = app_for(client)
    async with app.run_test(size=(160, 45)) as pilot:
        screen = await open_rollout(pilot, app)
        assert sorted(screen.nodes) == ["ap-sgp-01", "eu-fra-02", "us-iad-02"]
        assert screen.query_one(SelectionList).option_count == 3


async def test_confirm_then_live_progress_then_summary() -> None:
    client = FakeClient(ssh_fleet())
    client.rollout_updates = [  # type: ignore[attr-defined]
        {"action": "install", "state": "running", "version": "0.3.0", "error": "",
         "hosts": [host("ap-sgp-01", 2), host("us-iad-02", 0)]},
        {"action": "install", "state": "succeeded", "version": "0.3.0", "error": "",
         "hosts": [host("ap-sgp-01", 8, "installed"), host("us-iad-02", 8, "upgraded")]},
    ]
    app = app_for(client)
    async with app.run_test(size=(160, 45)) as pilot:
        screen = await open_rollout(pilot, app)
        nodes = screen.query_one(SelectionList)
        nodes.select("ap-sgp-01")
        nodes.select("us-iad-02")
        await pilot.press("i")
        await until(pilot, lambda: isinstance(app.screen, ConfirmScreen))
        confirm = app.screen
        assert isinstance(confirm, ConfirmScreen)
        assert "ap-sgp-01" in confirm._message and "us-iad-02" in confirm._message and "0.3.0" in confirm._message
        assert not client.called("start_rollout")
        await pilot.press("y")
        await until(pilot, lambda: screen.rollout.get("state") == "succeeded")
        assert client.called("start_rollout")[0][1]["nodes"] == ["ap-sgp-01", "us-iad-02"]
        assert client.called("start_rollout")[0][1]["action"] == "install"
        table = screen.query_one(DataTable)
        assert table.row_count == 2
        assert str(table.get_cell("ap-sgp-01", "verify")) == "✓"
        assert str(table.get_cell("ap-sgp-01", "result")) == "installed"
        summary = str(screen.query_one("#rollout-summary").render())
        assert "1 installed" in summary and "1 upgraded" in summary


async def test_per_step_cells_update_in_place() -> None:
    client = FakeClient(ssh_fleet())
    app = app_for(client)
    async with app.run_test(size=(160, 45)) as pilot:
        screen = await open_rollout(pilot, app)
        screen._show_rollout({"id": "ro-1", "action": "install", "state": "running", "hosts": [host("ap-sgp-01", 2)]})
        table = screen.query_one(DataTable)
        assert str(table.get_cell("ap-sgp-01", "upload")) == "●"
        assert table.get_cell("ap-sgp-01", "message") == "uploading"
        screen._show_rollout({"id": "ro-1", "action": "install", "state": "running", "hosts": [host("ap-sgp-01", 3)]})
        assert str(table.get_cell("ap-sgp-01", "upload")) == "✓"
        assert str(table.get_cell("ap-sgp-01", "install")) == "●"


async def test_all_without_agent_and_uninstall() -> None:
    client = FakeClient(ssh_fleet())
    app = app_for(client)
    async with app.run_test(size=(160, 45)) as pilot:
        screen = await open_rollout(pilot, app)
        await pilot.press("a", "u")
        await until(pilot, lambda: isinstance(app.screen, ConfirmScreen))
        assert "no agent" in app.screen._message  # type: ignore[attr-defined]
        await pilot.press("y")
        await until(pilot, lambda: client.called("start_rollout"))
        kwargs = client.called("start_rollout")[0][1]
        assert kwargs["all_without_agent"] is True and kwargs["nodes"] is None and kwargs["action"] == "uninstall"
        await until(pilot, lambda: screen.rollout)


async def test_unknown_host_key_shows_fingerprint_and_t_trusts_and_retries() -> None:
    client = FakeClient(ssh_fleet())
    refused = host("ap-sgp-01", 0, "failed", "host key of ap-sgp-01.example:22 is not known: SHA256:fake-ap-sgp-01 ;"
                   " trust it with gamenode ssh trust", failed=True)
    client.rollout_updates = [{"action": "install", "state": "failed", "version": "0.3.0", "error": "",  # type: ignore[attr-defined]
                               "hosts": [refused, host("us-iad-02", 8, "installed")]}]
    app = app_for(client)
    async with app.run_test(size=(160, 45)) as pilot:
        screen = await open_rollout(pilot, app)
        nodes = screen.query_one(SelectionList)
        nodes.select("ap-sgp-01")
        nodes.select("us-iad-02")
        await pilot.press("enter")
        await until(pilot, lambda: isinstance(app.screen, ConfirmScreen))
        await pilot.press("y")
        await until(pilot, lambda: screen.host_keys)
        prompt = str(screen.query_one("#rollout-keys").render())
        assert "SHA256:fake-ap-sgp-01" in prompt and screen.query_one("#rollout-keys").has_class("-shown")
        client.rollout_updates = [{"action": "install", "state": "succeeded", "version": "0.3.0",  # type: ignore[attr-defined]
                                   "error": "", "hosts": [host("ap-sgp-01", 8, "installed")]}]
        await pilot.press("t")
        await until(pilot, lambda: len(client.called("start_rollout")) == 2)
        assert client.called("trust_host_key")[0][0] == ("ap-sgp-01", "SHA256:fake-ap-sgp-01", False)
        assert client.called("start_rollout")[1][1]["nodes"] == ["ap-sgp-01"]
        await until(pilot, lambda: screen.rollout.get("state") == "succeeded")
        assert not screen.host_keys and not screen.query_one("#rollout-keys").has_class("-shown")


async def test_a_hub_without_rollouts_says_so() -> None:
    client = FakeClient(ssh_fleet())
    client.fail["start_rollout"] = NotAvailable("StartRollout is not implemented", "unimplemented")
    app = app_for(client)
    async with app.run_test(size=(160, 45)) as pilot:
        screen = await open_rollout(pilot, app)
        screen.query_one(SelectionList).select("eu-fra-02")
        await pilot.press("i")
        await until(pilot, lambda: isinstance(app.screen, ConfirmScreen))
        await pilot.press("y")
        await until(pilot, lambda: notified(app, NOT_AVAILABLE))
        assert NOT_AVAILABLE in str(screen.query_one("#rollout-status").render())


def test_fixture_is_not_shared() -> None:
    assert "ssh" not in copy.deepcopy(fleet())[0]
