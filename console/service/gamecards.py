"""GameCardService: games, their versions, and which version is the default.

Versions are semantic versions and are listed newest first. The default is
the card's explicit `default_version` when set, else its newest active
version. A deprecated version stays listed but starts no new instances; the
explicit default cannot be deprecated until another default is chosen.

A version's secret params (`console.service.param_secrets`, by the card's
platform's pipeline) are stored as given and read `***` in what the APIs
answer (`redacted`); a write that gives a secret as `***` keeps the value
stored for that version.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import datetime
from typing import Any

from pydantic import Field

from console.errors import AlreadyExists, Conflict, InvalidInput, NotFound
from console.models import GameCard, GameCardStatus, GameVersion, Model, utcnow
from console.semver import SemVer
from console.service._input import client_fields, update_fields
from console.service.param_secrets import SecretParams, keep_stored
from console.service.query import Page, paginate, sort_records
from console.service.selector import Selector
from console.store import GameCardStore, InstanceStore, PlatformStore
from console.validation import validate

__all__ = ["GameCardQuery", "GameCardService", "default_version", "sorted_versions"]

SORT_FIELDS = frozenset({"id", "name", "platform", "created_at", "updated_at"})


def sorted_versions(card: GameCard) -> list[GameVersion]:
    """Newest first, by semantic-version precedence."""
    return sorted(card.versions, key=lambda v: SemVer.parse(v.version), reverse=True)


def default_version(card: GameCard) -> GameVersion | None:
    if card.default_version:
        return next((v for v in card.versions if v.version == card.default_version), None)
    return next((v for v in sorted_versions(card) if v.status == GameCardStatus.ACTIVE), None)


class GameCardQuery(Model):
    q: str | None = None
    """Free text matched against id and name, ignoring case."""
    platform: str | None = None
    status: GameCardStatus | None = None
    """active: has at least one active version; deprecated: has none."""
    selector: str | None = None
    sort: str = "id"
    limit: int | None = Field(default=None, ge=0)
    offset: int = Field(default=0, ge=0)


class GameCardService:
    def __init__(
        self,
        gamecards: GameCardStore,
        platforms: PlatformStore,
        instances: InstanceStore,
        clock: Callable[[], datetime] = utcnow,
        lock: threading.RLock | None = None,
        secrets: SecretParams | None = None,
    ) -> None:
        self.gamecards = gamecards
        self.platforms = platforms
        self.instances = instances
        self.clock = clock
        self._lock = lock or threading.RLock()
        """Held across check-and-write of anything that spans records (see `Services`)."""
        self.secrets = secrets or SecretParams()
        """Which params are secret (the pipeline catalog's flags, else the name rule)."""

    def list_cards(self, query: GameCardQuery | None = None) -> Page[GameCard]:
        q = query or GameCardQuery()
        selector = Selector.parse(q.selector)
        keys = sort_records(q.sort, SORT_FIELDS)
        needle = (q.q or "").casefold()

        def wanted(c: GameCard) -> bool:
            active = any(v.status == GameCardStatus.ACTIVE for v in c.versions)
            return (
                (not needle or needle in c.id.casefold() or needle in c.name.casefold())
                and (q.platform is None or c.platform == q.platform)
                and (q.status is None or active == (q.status == GameCardStatus.ACTIVE))
                and selector.matches(c.labels)
            )

        return paginate(keys([c for c in self.gamecards.list() if wanted(c)]), q.limit, q.offset)

    def get_card(self, id: str) -> GameCard:
        """The card as stored, secrets included (answers go through `redacted`)."""
        return self.gamecards.get(id)

    def redacted(self, card: GameCard) -> GameCard:
        """`card` as the APIs show it: each secret param of its versions with a value reads `***`."""
        pipeline = self._pipeline(card)
        versions = [self._redacted(v, pipeline) for v in card.versions]
        same = all(new is old for new, old in zip(versions, card.versions, strict=True))
        return card if same else card.model_copy(update={"versions": versions})

    def redacted_version(self, card: GameCard, version: GameVersion) -> GameVersion:
        """One of `card`'s versions as the APIs show it."""
        return self._redacted(version, self._pipeline(card))

    def create_card(self, data: dict[str, Any]) -> GameCard:
        now = self.clock()
        data = client_fields(data)
        card = validate(GameCard, {**data, "created_at": now, "updated_at": now}, "game card")
        with self._lock:
            self._check(card)
            return self.gamecards.add(self._keep_secrets(card, None))

    def update_card(self, id: str, changes: dict[str, Any]) -> GameCard:
        changes = update_fields("game card", id, changes)

        def change(old: GameCard) -> GameCard:
            card = validate(GameCard, {**old.model_dump(), **changes, "updated_at": self.clock()}, "game card")
            self._check(card)
            card = self._keep_secrets(card, old)
            kept = {v.version for v in card.versions}
            for gone in (v.version for v in old.versions if v.version not in kept):
                self._check_unused(id, gone)
            return card

        with self._lock:
            return self.gamecards.mutate(id, change)

    def delete_card(self, id: str) -> GameCard:
        with self._lock:
            self.gamecards.get(id)
            live = [i.id for i in self.instances if i.game == id and i.state.live]
            if live:
                raise Conflict(f"game card {id!r} is used by live instance(s) {', '.join(live[:10])}")
            return self.gamecards.delete(id)

    # --- versions -----------------------------------------------------------

    def add_version(self, id: str, data: dict[str, Any]) -> GameCard:
        given = validate(GameVersion, {**data, "created_at": self.clock()}, "game version")

        def change(card: GameCard) -> GameCard:
            new = SemVer.parse(given.version)
            if any(SemVer.parse(v.version) == new for v in card.versions):
                raise AlreadyExists(f"game card {id!r} already has version {given.version}")
            version = self._keep_version_secrets(given, None, (self._pipeline(card),), "params")
            return self._with(card, versions=[*card.versions, version])

        return self.gamecards.mutate(id, change)

    def set_version_status(self, id: str, version: str, status: GameCardStatus | str) -> GameCard:
        try:
            new = GameCardStatus(status)
        except ValueError:
            raise InvalidInput(f"status: must be active or deprecated (got {status!r})") from None

        def change(card: GameCard) -> GameCard:
            self._version(card, version)
            if new == GameCardStatus.DEPRECATED and card.default_version == version:
                raise Conflict(f"version {version} is the default of game card {id!r}; "
                               "choose another default before deprecating it")
            versions = [v.model_copy(update={"status": new}) if v.version == version else v for v in card.versions]
            return self._with(card, versions=versions)

        return self.gamecards.mutate(id, change)

    def deprecate_version(self, id: str, version: str) -> GameCard:
        return self.set_version_status(id, version, GameCardStatus.DEPRECATED)

    def remove_version(self, id: str, version: str) -> GameCard:
        def change(card: GameCard) -> GameCard:
            self._version(card, version)
            self._check_unused(id, version)
            if card.default_version == version:
                raise Conflict(f"version {version} is the default of game card {id!r}; choose another first")
            return self._with(card, versions=[v for v in card.versions if v.version != version])

        with self._lock:
            return self.gamecards.mutate(id, change)

    def set_default_version(self, id: str, version: str | None) -> GameCard:
        """Make `version` the default; None goes back to "newest active"."""
        def change(card: GameCard) -> GameCard:
            if version is not None:
                v = self._version(card, version)
                if v.status == GameCardStatus.DEPRECATED:
                    raise Conflict(f"version {version} of {id!r} is deprecated and cannot be the default")
            return self._with(card, default_version=version)

        return self.gamecards.mutate(id, change)

    # --- internals ----------------------------------------------------------

    def _pipeline(self, card: GameCard) -> str | None:
        """The start pipeline of the card's platform; None when it names none (or an unknown one)."""
        platform = self.platforms.find(card.platform) if card.platform is not None else None
        return platform.pipeline if platform is not None else None

    def _redacted(self, version: GameVersion, pipeline: str | None) -> GameVersion:
        params = self.secrets.redact(version.params, pipeline)
        return version if params == version.params else version.model_copy(update={"params": params})

    def _keep_secrets(self, new: GameCard, old: GameCard | None) -> GameCard:
        """`new` with each secret version param given as `***` set back to the value `old` holds for the
        same version."""
        pipelines = (self._pipeline(new), *([self._pipeline(old)] if old is not None else []))
        stored = {SemVer.parse(v.version): v for v in old.versions} if old is not None else {}
        versions = [
            self._keep_version_secrets(v, stored.get(SemVer.parse(v.version)), pipelines, f"versions[{i}].params")
            for i, v in enumerate(new.versions)
        ]
        same = all(v is w for v, w in zip(versions, new.versions, strict=True))
        return new if same else new.model_copy(update={"versions": versions})

    def _keep_version_secrets(
        self, new: GameVersion, old: GameVersion | None, pipelines: tuple[str | None, ...], path: str
    ) -> GameVersion:
        secret = self.secrets.keys(new.params, *pipelines)
        params = keep_stored(new.params, old.params if old is not None else {}, secret, path)
        return new if params is new.params else new.model_copy(update={"params": params})

    def _with(self, card: GameCard, **update: Any) -> GameCard:
        return validate(GameCard, {**card.model_dump(), **update, "updated_at": self.clock()}, "game card")

    def _version(self, card: GameCard, version: str) -> GameVersion:
        found = next((v for v in card.versions if v.version == version), None)
        if found is None:
            raise NotFound("game version", f"{card.id}@{version}")
        return found

    def _check_unused(self, id: str, version: str) -> None:
        users = [i.id for i in self.instances if i.game == id and i.game_version == version and i.state.live]
        if users:
            raise Conflict(f"version {version} of {id!r} is used by live instance(s) {', '.join(users[:10])}")

    def _check(self, card: GameCard) -> None:
        if card.platform is not None and card.platform not in self.platforms:
            raise InvalidInput(f"platform: no platform {card.platform!r}")
        if card.default_version is not None:
            v = next((v for v in card.versions if v.version == card.default_version), None)
            if v is None:
                raise InvalidInput(f"default_version: {card.default_version!r} is not one of the card's versions")
            if v.status == GameCardStatus.DEPRECATED:
                raise InvalidInput(f"default_version: {card.default_version!r} is deprecated")
