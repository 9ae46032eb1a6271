"""`gamenode console` and `gamenode demo`: which hub the console gets, and when the demo stays headless."""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import Callable
from pathlib import Path

import pytest

from console import cli, cli_console
from console.tui.client import HubClient


def _capture(monkeypatch: pytest.MonkeyPatch, check: Callable[[HubClient], int] | None = None) -> list[HubClient]:
    """Replace the Textual app with a recorder of the client it would get."""
    made: list[HubClient] = []

    def run_app(factory: Callable[[], HubClient]) -> int:
        client = factory()
        made.append(client)
        return check(client) if check else 0

    monkeypatch.setattr(cli_console, "_run_app", run_app)
    return made


def test_connect_points_the_console_at_a_remote_hub(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    made = _capture(monkeypatch)
    (tmp_path / "ca.pem").write_bytes(b"--- the hub's CA ---")
    assert cli.main(["console", "--connect", "hub.example.net:7070", "--ca", str(tmp_path / "ca.pem"),
                     "--token", "abc.def"]) == 0
    assert [c.target for c in made] == ["hub.example.net:7070"]
    assert made[0].ca_pem == b"--- the hub's CA ---" and not made[0].insecure
    assert ("authorization", "Bearer abc.def") in made[0]._metadata


def test_connect_finds_the_token_and_ca_in_the_data_dir(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    made = _capture(monkeypatch)
    monkeypatch.delenv("GAMENODE_TOKEN", raising=False)
    monkeypatch.setenv("GAMENODE_DATA_DIR", str(tmp_path))
    (tmp_path / "ca.pem").write_bytes(b"ca")
    (tmp_path / "admin.token").write_text("id1.secret\n")
    assert cli.main(["console", "--connect", "127.0.0.1:7070"]) == 0
    assert made[0].ca_pem == b"ca" and ("authorization", "Bearer id1.secret") in made[0]._metadata


def test_connect_without_the_hubs_ca_is_a_clear_error(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    made = _capture(monkeypatch)
    monkeypatch.setenv("GAMENODE_DATA_DIR", str(tmp_path))
    assert cli.main(["console", "--connect", "127.0.0.1:7070", "--token", "a.b"]) == 1
    assert not made
    assert f"cannot read the hub's CA certificate {tmp_path / 'ca.pem'}" in capsys.readouterr().err


def test_connect_to_a_socket_or_an_insecure_hub_needs_no_ca(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    made = _capture(monkeypatch)
    monkeypatch.setenv("GAMENODE_DATA_DIR", str(tmp_path))
    assert cli.main(["console", "--connect", f"unix:{tmp_path}/hub.sock", "--token", "a.b"]) == 0
    assert cli.main(["console", "--connect", "127.0.0.1:7070", "--insecure", "--token", "a.b"]) == 0
    socket, insecure = made
    assert socket.local and not any(key == "authorization" for key, _ in socket._metadata)  # no token on the socket
    assert insecure.insecure and ("authorization", "Bearer a.b") in insecure._metadata


def test_without_connect_the_console_gets_an_embedded_hub(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    async def version(client: HubClient) -> str:
        await client.connect()
        try:
            return await client.version()
        finally:
            await client.close()

    made = _capture(monkeypatch, lambda client: 0 if asyncio.run(version(client)) else 1)
    assert cli.main(["console", "--data-dir", str(tmp_path / "data")]) == 0
    assert [c.target for c in made] == [f"unix:{tmp_path / 'data' / 'hub.sock'}"]
    assert not (tmp_path / "data" / "hub.sock").exists()  # the hub stopped with the console


@pytest.mark.parametrize(
    ("argv", "tty", "console"),
    [(["demo"], True, True), (["demo", "--headless"], True, False), (["demo"], False, False)],
)
def test_the_demo_is_headless_without_a_terminal(
    monkeypatch: pytest.MonkeyPatch, argv: list[str], tty: bool, console: bool
) -> None:
    ran: list[str] = []

    def record(name: str) -> Callable[[argparse.Namespace], int]:
        return lambda args: ran.append(name) or 0

    monkeypatch.setattr(cli, "interactive", lambda: tty)
    monkeypatch.setattr(cli, "run_demo_console", record("console"))
    monkeypatch.setattr(cli, "_run_headless_demo", record("headless"))
    assert cli.main(argv) == 0
    assert ran == ["console" if console else "headless"]


def test_the_demo_console_gets_the_seeded_demo_hub(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    async def count(client: HubClient) -> int:
        await client.connect()
        try:
            return len(await client.list_nodes())
        finally:
            await client.close()

    monkeypatch.setattr(cli, "interactive", lambda: True)
    counts: list[int] = []
    made = _capture(monkeypatch, lambda client: counts.append(asyncio.run(count(client))) or 0)
    assert cli.main(["demo", "--no-agents", "--data-dir", str(tmp_path / "demo")]) == 0
    assert [c.target for c in made] == [f"unix:{tmp_path / 'demo' / 'hub.sock'}"]
    assert counts == [6]  # the sample fleet
