"""PlatformService: game runtimes, their config map and whether they are enabled.

A platform's secret params (`console.service.param_secrets`) are stored as
given and read `***` in what the APIs answer (`redacted`); a write that gives
a secret as `***` keeps the stored value.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import datetime
from typing import Any

from pydantic import Field

from console.errors import Conflict, InvalidInput, NotFound
from console.models import Model, Platform, PlatformState, utcnow
from console.service._input import client_fields, update_fields
from console.service.param_secrets import SecretParams, keep_stored
from console.service.query import Page, paginate, sort_records
from console.store import GameCardStore, InstanceStore, PlatformStore
from console.validation import validate

__all__ = ["PlatformQuery", "PlatformService"]

SORT_FIELDS = frozenset({"id", "name", "state", "pipeline", "created_at", "updated_at"})


class PlatformQuery(Model):
    q: str | None = None
    state: PlatformState | None = None
    pipeline: str | None = None
    sort: str = "id"
    limit: int | None = Field(default=None, ge=0)
    offset: int = Field(default=0, ge=0)


class PlatformService:
    def __init__(
        self,
        platforms: PlatformStore,
        gamecards: GameCardStore,
        instances: InstanceStore,
        clock: Callable[[], datetime] = utcnow,
        lock: threading.RLock | None = None,
        secrets: SecretParams | None = None,
    ) -> None:
        self.platforms = platforms
        self.gamecards = gamecards
        self.instances = instances
        self.clock = clock
        self._lock = lock or threading.RLock()
        """Held across check-and-write of anything that spans records (see `Services`)."""
        self.secrets = secrets or SecretParams()
        """Which params are secret (the pipeline catalog's flags, else the name rule)."""

    def list_platforms(self, query: PlatformQuery | None = None) -> Page[Platform]:
        q = query or PlatformQuery()
        keys = sort_records(q.sort, SORT_FIELDS)
        needle = (q.q or "").casefold()

        def wanted(p: Platform) -> bool:
            return (
                (not needle or needle in p.id.casefold() or needle in p.name.casefold())
                and (q.state is None or p.state == q.state)
                and (q.pipeline is None or p.pipeline == q.pipeline)
            )

        return paginate(keys([p for p in self.platforms.list() if wanted(p)]), q.limit, q.offset)

    def get_platform(self, id: str) -> Platform:
        """The platform as stored, secrets included (answers go through `redacted`)."""
        return self.platforms.get(id)

    def redacted(self, platform: Platform) -> Platform:
        """`platform` as the APIs show it: each secret param with a value reads `***`."""
        params = self.secrets.redact(platform.params, platform.pipeline)
        return platform if params == platform.params else platform.model_copy(update={"params": params})

    def create_platform(self, data: dict[str, Any]) -> Platform:
        now = self.clock()
        data = client_fields(data)
        platform = validate(Platform, {**data, "created_at": now, "updated_at": now}, "platform")
        return self.platforms.add(self._keep_secrets(platform, None))

    def update_platform(self, id: str, changes: dict[str, Any]) -> Platform:
        changes = update_fields("platform", id, changes)
        return self.platforms.mutate(id, lambda old: self._keep_secrets(self._with(old, **changes), old))

    def delete_platform(self, id: str) -> Platform:
        with self._lock:
            self.platforms.get(id)
            cards = [c.id for c in self.gamecards if c.platform == id]
            if cards:
                raise Conflict(f"platform {id!r} is used by game card(s) {', '.join(cards[:10])}")
            live = [i.id for i in self.instances if i.platform == id and i.state.live]
            if live:
                raise Conflict(f"platform {id!r} runs live instance(s) {', '.join(live[:10])}")
            return self.platforms.delete(id)

    def set_state(self, id: str, state: PlatformState | str) -> Platform:
        try:
            new = PlatformState(state)
        except ValueError:
            raise InvalidInput(f"state: must be enabled or disabled (got {state!r})") from None
        return self.platforms.mutate(id, lambda old: old if old.state == new else self._with(old, state=new))

    def enable(self, id: str) -> Platform:
        return self.set_state(id, PlatformState.ENABLED)

    def disable(self, id: str) -> Platform:
        return self.set_state(id, PlatformState.DISABLED)

    # --- config map ---------------------------------------------------------

    def get_config(self, id: str, key: str | None = None) -> Any:
        """The whole config map, or the value of one key."""
        config = self.platforms.get(id).config
        if key is None:
            return dict(config)
        if key not in config:
            raise NotFound("config key", f"{id}/{key}")
        return config[key]

    def set_config(self, id: str, values: dict[str, Any], replace: bool = False) -> Platform:
        """Merge `values` into the config map (or replace it whole)."""
        return self.platforms.mutate(
            id, lambda old: self._with(old, config=dict(values) if replace else {**old.config, **values})
        )

    def delete_config(self, id: str, key: str) -> Platform:
        def change(old: Platform) -> Platform:
            if key not in old.config:
                raise NotFound("config key", f"{id}/{key}")
            return self._with(old, config={k: v for k, v in old.config.items() if k != key})

        return self.platforms.mutate(id, change)

    def _keep_secrets(self, new: Platform, old: Platform | None) -> Platform:
        """`new` with each secret param given as `***` set back to `old`'s value."""
        secret = self.secrets.keys(new.params, new.pipeline, *([old.pipeline] if old is not None else []))
        params = keep_stored(new.params, old.params if old is not None else {}, secret)
        return new if params is new.params else new.model_copy(update={"params": params})

    def _with(self, platform: Platform, **update: Any) -> Platform:
        return validate(Platform, {**platform.model_dump(), **update, "updated_at": self.clock()}, "platform")
