"""What every service does with a client's record fields before validating them."""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

from console.errors import InvalidInput

__all__ = ["SERVER_TIMES", "client_fields", "update_fields"]

SERVER_TIMES = ("created_at", "updated_at")
"""Fields every record has that the hub, not the client, sets."""


def client_fields(data: dict[str, Any], server_owned: Collection[str] = SERVER_TIMES) -> dict[str, Any]:
    """`data` without the fields the hub owns: accepted (a client may send a whole record back), not taken."""
    return {k: v for k, v in data.items() if k not in server_owned}


def update_fields(
    kind: str, id: str, changes: dict[str, Any], server_owned: Collection[str] = SERVER_TIMES
) -> dict[str, Any]:
    """`client_fields(changes)`, refusing a change of the record's id."""
    changes = client_fields(changes, server_owned)
    if changes.get("id", id) != id:
        raise InvalidInput(f"id: cannot change a {kind}'s id ({id!r} → {changes['id']!r})")
    return changes
