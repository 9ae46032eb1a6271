"""How the `gamenode` commands that talk to a hub prove who they are, and which hub they trust.

The API token is `--token`, else `$GAMENODE_TOKEN`, else the local hub's
`DATA_DIR/admin.token` (the hub writes it on first start, 0600), so on the
hub's own host nothing needs setting up. `DATA_DIR` is `--data-dir`, else
`$GAMENODE_DATA_DIR`, else `~/.local/share/gamenode`.

The console reaches a hub's gRPC TCP port over TLS and trusts only the hub's
own CA: `--ca FILE`, else `DATA_DIR/ca.pem`. `unix:PATH` targets stay
plaintext, and need no token (the socket is the hub user's only).
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from console.errors import Unauthorized, Unavailable

__all__ = ["TOKEN_ENV", "add_tls_flags", "add_token_flags", "data_dir_of", "resolve_ca", "resolve_token"]

TOKEN_ENV = "GAMENODE_TOKEN"
ADMIN_TOKEN_FILE = "admin.token"
CA_FILE = "ca.pem"


def add_token_flags(parser: argparse.ArgumentParser, data_dir: bool = True) -> None:
    """`--token` (and `--data-dir`, where the local admin token is, unless the command has it already)."""
    parser.add_argument("--token", metavar="TOKEN", default=None,
                        help=f"API token (default: ${TOKEN_ENV}, else DATA_DIR/{ADMIN_TOKEN_FILE})")
    if data_dir:
        parser.add_argument("--data-dir", type=Path, default=None,
                            help="the local hub's data directory, for its admin token (default: $GAMENODE_DATA_DIR "
                                 "or ~/.local/share/gamenode)")


def add_tls_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--ca", type=Path, default=None, metavar="FILE",
                        help=f"the hub's CA certificate for TLS (default: DATA_DIR/{CA_FILE})")
    parser.add_argument("--insecure", action="store_true",
                        help="plaintext gRPC, for a hub started with --insecure (the token is still sent)")


def data_dir_of(args: argparse.Namespace) -> Path:
    """The local data directory: `--data-dir`, else the hub's default (environment, config file)."""
    from console.settings import HubSettings

    explicit: Path | None = getattr(args, "data_dir", None)
    return explicit if explicit is not None else HubSettings.load().data_dir


def resolve_token(args: argparse.Namespace, required: bool = True) -> str | None:
    """The API token to send: `--token`, `$GAMENODE_TOKEN`, or `DATA_DIR/admin.token`.

    Unauthorized when there is none and `required`.
    """
    token = getattr(args, "token", None) or os.environ.get(TOKEN_ENV)
    if token:
        return str(token).strip()
    path = data_dir_of(args) / ADMIN_TOKEN_FILE
    try:
        text = path.read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        text = ""
    except OSError as exc:
        raise Unauthorized(f"cannot read the admin token {path}: {exc.strerror or exc}") from None
    if text:
        return text.splitlines()[0].strip()
    if not required:
        return None
    raise Unauthorized(f"no API token: pass --token or set ${TOKEN_ENV} (a local hub's admin token would be in "
                       f"{path}; `gamenode tokens create` makes more)")


def resolve_ca(args: argparse.Namespace) -> bytes:
    """The hub's CA certificate (PEM) to pin: `--ca FILE`, else `DATA_DIR/ca.pem`."""
    explicit: Path | None = getattr(args, "ca", None)
    path = explicit if explicit is not None else data_dir_of(args) / CA_FILE
    try:
        return path.read_bytes()
    except OSError as exc:
        hint = "" if explicit is not None else " (pass --ca FILE: a copy of the hub's DATA_DIR/ca.pem)"
        raise Unavailable(f"cannot read the hub's CA certificate {path}: {exc.strerror or exc}{hint}") from None
