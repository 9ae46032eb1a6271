"""The operator console (Textual): `GamenodeApp` over a `HubClient`.

`from console.tui import GamenodeApp` imports Textual only when asked, so the
embedded hub and the client can be imported without it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from console.tui.app import GamenodeApp

__all__ = ["GamenodeApp"]


def __getattr__(name: str) -> Any:
    if name == "GamenodeApp":
        from console.tui.app import GamenodeApp

        return GamenodeApp
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
