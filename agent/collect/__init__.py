"""Host facts for the hub: inventory (once per connection) and metrics (every interval)."""

from __future__ import annotations

__all__: list[str] = []
