"""`gamenode console` and the interactive `gamenode demo`: the Textual console over a hub.

    gamenode console [--data-dir DIR] [--connect HOST:PORT [--token TOKEN] [--ca FILE | --insecure]]
    gamenode demo    [--data-dir DIR] [--http-listen HOST:PORT] [--grpc-listen HOST:PORT] [--no-agents] [--headless]

Without `--connect` the console starts an embedded hub on the data dir (a
child process, reached over `unix:DATA_DIR/hub.sock`; its output in
`DATA_DIR/hub.log`) and stops it on exit. `--connect HOST:PORT` is TLS with
the hub's CA pinned (`--ca`, default `DATA_DIR/ca.pem`) and sends an API
token (`--token`, `$GAMENODE_TOKEN`, else `DATA_DIR/admin.token`; see
`console.cli_auth`); `--connect unix:PATH` needs neither. The demo runs `gamenode demo
--headless` (a seeded hub and three local agents) that way and opens the
console on it; with `--headless`, or when stdin or stdout is not a terminal
(`make demo | cat`, CI), it is the headless demo alone.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from console.cli_auth import add_tls_flags, add_token_flags, resolve_ca, resolve_token

if TYPE_CHECKING:
    from console.tui.client import HubClient

__all__ = ["add_console_command", "interactive", "run_console", "run_demo_console"]


def add_console_command(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add `console` to the `gamenode` parser's subcommands."""
    console = sub.add_parser("console", help="the operator console (TUI), on an embedded hub or --connect to one")
    console.add_argument("--data-dir", type=Path, default=None,
                         help="the embedded hub's data directory (default: $GAMENODE_DATA_DIR or "
                              "~/.local/share/gamenode)")
    console.add_argument("--connect", metavar="HOST:PORT",
                         help="a running hub's gRPC address (or unix:PATH) instead of an embedded hub")
    add_token_flags(console, data_dir=False)
    add_tls_flags(console)
    console.set_defaults(handler=run_console)


def interactive() -> bool:
    """True when stdin and stdout are a terminal the console can draw on."""
    return sys.stdin.isatty() and sys.stdout.isatty()


def run_console(args: argparse.Namespace) -> int:
    if args.connect:
        return _run_app(_remote_factory(args))
    from console.settings import HubSettings
    from console.tui.embedded import EmbeddedHub

    data_dir = HubSettings.load(data_dir=args.data_dir).data_dir
    print(f"gamenode console: starting the hub on {data_dir} ...", flush=True)
    with EmbeddedHub(data_dir) as hub:
        return _run_app(_factory(hub.target))


def run_demo_console(args: argparse.Namespace) -> int:
    """The headless demo as an embedded hub child, and the console on it."""
    from console.tui.embedded import EmbeddedHub

    command = ["demo", "--headless", *(["--no-agents"] if args.no_agents else [])]
    hub = EmbeddedHub(args.data_dir, command=command, grpc_listen=[args.grpc_listen or "127.0.0.1:0"],
                      http_listen=args.http_listen or "127.0.0.1:0")
    print(f"gamenode demo: starting a hub and local agents on {hub.data_dir} ...", flush=True)
    with hub:
        code = _run_app(_factory(hub.target))
    print("\n".join(hub.lines), flush=True)  # where the REST API and the agents' logs were
    return code


def _factory(target: str) -> Callable[[], HubClient]:
    from console.tui.client import HubClient

    return lambda: HubClient(target)


def _remote_factory(args: argparse.Namespace) -> Callable[[], HubClient]:
    """A hub at `--connect`: over TLS with its CA pinned and a token, unless it is a unix socket."""
    from console.tui.client import HubClient

    target: str = args.connect
    if target.startswith("unix:"):
        return _factory(target)
    token = resolve_token(args, required=False)
    ca_pem = None if args.insecure else resolve_ca(args)
    return lambda: HubClient(target, token=token, ca_pem=ca_pem, insecure=args.insecure)


def _run_app(client_factory: Callable[[], HubClient]) -> int:
    from console.tui.app import GamenodeApp

    app = GamenodeApp(client_factory=client_factory)
    app.run()
    code = app.return_code
    return code if isinstance(code, int) else 0
