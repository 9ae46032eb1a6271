"""GameCardStore persists versions, their statuses and the default version."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from console.errors import Conflict, NotFound
from console.models import GameCard, GameCardStatus, GameVersion, Resources
from console.store import GameCardStore

MakeCard = Callable[..., GameCard]
MakeVersion = Callable[..., GameVersion]
Reopen = Callable[[Any], Any]


def test_crud(gamecard_store: GameCardStore, make_gamecard: MakeCard, reopen: Reopen) -> None:
    card = make_gamecard("cs2", description="Counter-Strike 2", platform="steam", labels={"genre": "fps"})
    gamecard_store.add(card)
    assert reopen(gamecard_store).get("cs2") == card

    gamecard_store.update(card.model_copy(update={"name": "CS 2"}))
    assert reopen(gamecard_store).get("cs2").name == "CS 2"

    gamecard_store.delete("cs2")
    with pytest.raises(NotFound, match="game card 'cs2' not found"):
        reopen(gamecard_store).get("cs2")


def test_duplicate_card_is_a_conflict(gamecard_store: GameCardStore, make_gamecard: MakeCard) -> None:
    gamecard_store.add(make_gamecard("g1"))
    with pytest.raises(Conflict, match="game card 'g1' already exists"):
        gamecard_store.add(make_gamecard("g1"))


def test_versions_are_persisted_in_order_with_their_details(
    gamecard_store: GameCardStore, make_gamecard: MakeCard, make_version: MakeVersion, reopen: Reopen
) -> None:
    versions = [
        make_version("2.0.0-rc.1", params={"beta": True}),
        make_version("1.10.0", resources=Resources(cpu=4, memory_mb=8192, gpu=1)),
        make_version("1.2.3+build.7", image="registry.local:5000/team/game@sha256:" + "ab" * 32),
    ]
    gamecard_store.add(make_gamecard("g1", versions=versions))
    back = reopen(gamecard_store).get("g1")
    assert back.versions == versions
    assert [v.version for v in back.versions] == ["2.0.0-rc.1", "1.10.0", "1.2.3+build.7"]
    assert back.versions[1].resources == Resources(cpu=4, memory_mb=8192, gpu=1)
    assert back.versions[0].params == {"beta": True}


def test_adding_a_version_and_changing_its_status_is_persisted(
    gamecard_store: GameCardStore, make_gamecard: MakeCard, make_version: MakeVersion, reopen: Reopen
) -> None:
    gamecard_store.add(make_gamecard("g1", versions=[make_version("1.0.0")]))
    added = make_version("1.1.0")
    gamecard_store.mutate("g1", lambda c: c.model_copy(update={"versions": [*c.versions, added]}))

    def deprecate_first(card: GameCard) -> GameCard:
        first = card.versions[0].model_copy(update={"status": GameCardStatus.DEPRECATED})
        return card.model_copy(update={"versions": [first, *card.versions[1:]]})

    gamecard_store.mutate("g1", deprecate_first)
    back = reopen(gamecard_store).get("g1")
    assert [(v.version, v.status) for v in back.versions] == [
        ("1.0.0", GameCardStatus.DEPRECATED),
        ("1.1.0", GameCardStatus.ACTIVE),
    ]


def test_removing_a_version_is_persisted(
    gamecard_store: GameCardStore, make_gamecard: MakeCard, make_version: MakeVersion, reopen: Reopen
) -> None:
    gamecard_store.add(make_gamecard("g1", versions=[make_version("1.0.0"), make_version("2.0.0")]))
    gamecard_store.mutate("g1", lambda c: c.model_copy(update={"versions": c.versions[1:]}))
    assert [v.version for v in reopen(gamecard_store).get("g1").versions] == ["2.0.0"]


def test_default_version_is_persisted_set_and_cleared(
    gamecard_store: GameCardStore, make_gamecard: MakeCard, make_version: MakeVersion, reopen: Reopen
) -> None:
    versions = [make_version("1.0.0"), make_version("2.0.0")]
    gamecard_store.add(make_gamecard("g1", versions=versions, default_version="1.0.0"))
    assert reopen(gamecard_store).get("g1").default_version == "1.0.0"

    gamecard_store.mutate("g1", lambda c: c.model_copy(update={"default_version": "2.0.0"}))
    assert reopen(gamecard_store).get("g1").default_version == "2.0.0"

    gamecard_store.mutate("g1", lambda c: c.model_copy(update={"default_version": None}))
    assert reopen(gamecard_store).get("g1").default_version is None
