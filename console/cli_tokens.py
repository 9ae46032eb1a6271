"""`gamenode tokens`: the API tokens consoles, scripts and REST clients use.

    gamenode tokens create --name NAME --role viewer|operator|admin [--ttl-days D]
    gamenode tokens list
    gamenode tokens revoke ID
        [--hub URL] [--token TOKEN] [--data-dir DIR]

With `--hub URL` the command goes through that hub's REST API (as an admin:
`--token`, `$GAMENODE_TOKEN` or `DATA_DIR/admin.token`). Without it, it opens
the data directory itself; when a hub holds it, the command asks that hub
(its `http_listen` from the settings, with `DATA_DIR/admin.token`).

`create` prints the token alone on stdout (`TOKEN=$(gamenode tokens create
...)`) and what it made on stderr: the token is not shown again.
"""

from __future__ import annotations

import argparse
import getpass
import sys
import urllib.parse
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any, Protocol

from console.cli_auth import add_token_flags, data_dir_of, resolve_token
from console.errors import InvalidInput, Unavailable
from console.models import Role

__all__ = ["add_tokens_command"]


def add_tokens_command(sub: Any) -> None:
    """Add `tokens create|list|revoke` to the `gamenode` parser's subcommands."""
    tokens = sub.add_parser("tokens", help="API tokens for consoles, scripts and the REST API")
    tokens_sub = tokens.add_subparsers(dest="tokens_command", required=True, metavar="COMMAND")

    create = tokens_sub.add_parser("create", help="make a token (printed once)")
    create.add_argument("--name", required=True, help="who or what holds it (the actor in the audit log)")
    create.add_argument("--role", required=True, choices=[r.value for r in Role],
                        help="viewer: every read; operator: runs and instances too; admin: everything")
    create.add_argument("--ttl-days", type=float, default=None, metavar="D", help="expire after D days (default: "
                                                                                   "never)")
    create.set_defaults(handler=run_create)

    listing = tokens_sub.add_parser("list", help="every token: id, name, role, expiry (never the secret)")
    listing.set_defaults(handler=run_list)

    revoke = tokens_sub.add_parser("revoke", help="delete a token; it stops working at once")
    revoke.add_argument("id", metavar="ID", help="the token's id (the part before the dot)")
    revoke.set_defaults(handler=run_revoke)

    for parser in (create, listing, revoke):
        parser.add_argument("--hub", metavar="URL", default=None,
                            help="a hub's REST API (default: the local data directory, or the hub holding it)")
        add_token_flags(parser)


# --- where the tokens are -------------------------------------------------------------


class _Tokens(Protocol):
    def create(self, name: str, role: str, ttl_days: float | None) -> dict[str, Any]: ...
    def list(self) -> list[dict[str, Any]]: ...
    def revoke(self, token_id: str) -> dict[str, Any] | None: ...
    def close(self) -> None: ...


class _Rest:
    """Tokens through a hub's REST API."""

    def __init__(self, url: str, token: str | None) -> None:
        from console.cli_rollout import HubClient

        self.client = HubClient(url, token=token)

    def create(self, name: str, role: str, ttl_days: float | None) -> dict[str, Any]:
        body: dict[str, Any] = {"name": name, "role": role}
        if ttl_days is not None:
            body["ttl_days"] = ttl_days
        answer: dict[str, Any] = self.client.post("/api/v1/tokens", body)
        return answer

    def list(self) -> list[dict[str, Any]]:
        answer: list[dict[str, Any]] = self.client.get("/api/v1/tokens")
        return answer

    def revoke(self, token_id: str) -> dict[str, Any] | None:
        self.client.delete(f"/api/v1/tokens/{urllib.parse.quote(token_id, safe='')}")
        return None

    def close(self) -> None:
        pass


class _Local:
    """Tokens in the data directory itself (no hub holds it); each change is audited as `local:USER`."""

    def __init__(self, args: argparse.Namespace) -> None:
        from console.service import Services
        from console.store import Stores

        self.stores = Stores.open(data_dir_of(args))
        self.services = Services.over(self.stores)
        self.actor = f"local:{_user()}"

    def create(self, name: str, role: str, ttl_days: float | None) -> dict[str, Any]:
        ttl = timedelta(days=ttl_days) if ttl_days is not None else None
        record, token = self.services.api_tokens.create(name, role, created_by=self.actor, ttl=ttl)
        self._audit("tokens create", record.id)
        return {**_fields(record), "token": token}

    def list(self) -> list[dict[str, Any]]:
        return [_fields(t) for t in self.services.api_tokens.list()]

    def revoke(self, token_id: str) -> dict[str, Any] | None:
        record = self.services.api_tokens.revoke(token_id)
        self._audit("tokens revoke", record.id)
        return _fields(record)

    def close(self) -> None:
        self.stores.close()

    def _audit(self, action: str, token_id: str) -> None:
        self.services.audit.record(actor=self.actor, role="admin", via="cli", action=action,
                                   target=("api_token", token_id), status="OK")


def _fields(record: Any) -> dict[str, Any]:
    from console.models import utcnow

    return {"id": record.id, "name": record.name, "role": str(record.role), "created_by": record.created_by,
            "created_at": record.created_at.isoformat(), "expired": record.expired(utcnow()),
            "expires_at": record.expires_at.isoformat() if record.expires_at else None}


def _user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"


def _open(args: argparse.Namespace) -> _Tokens:
    """The hub at `--hub`, else the data directory, else the hub that holds it."""
    if args.hub:
        return _Rest(args.hub, resolve_token(args, required=False))
    from console.store import DataDirLocked

    data_dir = data_dir_of(args)
    if not data_dir.is_dir():
        raise Unavailable(f"no data directory at {data_dir}: start a hub there first, or pass --hub URL "
                          "(or --data-dir DIR)")
    try:
        return _Local(args)
    except DataDirLocked as exc:
        return _Rest(_local_hub_url(args, exc), resolve_token(args))


def _local_hub_url(args: argparse.Namespace, locked: Exception) -> str:
    from console.settings import HubSettings, parse_listen

    settings = HubSettings.load(data_dir=data_dir_of(args))
    host, port = parse_listen(settings.http_listen)
    if port == 0:
        raise Unavailable(f"{locked}; its REST port is chosen at start (http_listen {settings.http_listen}): "
                          "pass --hub URL") from None
    if host in ("0.0.0.0", "::", ""):
        host = "127.0.0.1"
    return f"http://{f'[{host}]' if ':' in host else host}:{port}"


# --- the commands ---------------------------------------------------------------------


def run_create(args: argparse.Namespace) -> int:
    if args.ttl_days is not None and not 0 < args.ttl_days <= 3650:
        raise InvalidInput(f"--ttl-days: must be more than 0 and at most 3650 (got {args.ttl_days:g})")
    tokens = _open(args)
    try:
        made = tokens.create(args.name, args.role, args.ttl_days)
    finally:
        tokens.close()
    expires = f", expires {_when(made.get('expires_at'))}" if made.get("expires_at") else ""
    print(f"created API token {made['id']} ({made['name']}, {made['role']}{expires}); it is shown only now:",
          file=sys.stderr, flush=True)
    print(made["token"], flush=True)
    return 0


def run_list(args: argparse.Namespace) -> int:
    tokens = _open(args)
    try:
        listed = tokens.list()
    finally:
        tokens.close()
    rows = [(str(t["id"]), str(t["name"]), str(t["role"]), _when(t.get("created_at")), str(t.get("created_by") or "-"),
             "expired" if t.get("expired") else _when(t.get("expires_at")) or "never") for t in listed]
    print(_table(("ID", "NAME", "ROLE", "CREATED", "BY", "EXPIRES"), rows), flush=True)
    return 0


def run_revoke(args: argparse.Namespace) -> int:
    tokens = _open(args)
    try:
        revoked = tokens.revoke(args.id)
    finally:
        tokens.close()
    name = f" ({revoked['name']})" if revoked else ""
    print(f"revoked API token {args.id}{name}", flush=True)
    return 0


def _when(value: Any) -> str:
    if not value:
        return ""
    try:
        return datetime.fromisoformat(str(value).replace("Z", "+00:00")).strftime("%Y-%m-%d %H:%M UTC")
    except ValueError:
        return str(value)


def _table(header: tuple[str, ...], rows: Sequence[tuple[str, ...]]) -> str:
    widths = [max(len(str(cell)) for cell in column) for column in zip(header, *rows, strict=False)]
    lines = ["  ".join(str(cell).ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
             for row in (header, *rows)]
    return "\n".join(lines)
