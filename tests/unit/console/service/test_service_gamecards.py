"""GameCardService: cards, their versions in semver order, the default version, listing."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest

from console.errors import Conflict, InvalidInput, NotFound
from console.models import GameCard, GameCardStatus, GameNode, Platform
from console.service import GameCardQuery, Services
from console.service.gamecards import default_version, sorted_versions

MakeCard = Callable[..., GameCard]
MakeNode = Callable[..., GameNode]


@pytest.fixture
def docker(make_platform: Callable[..., Platform]) -> Platform:
    return make_platform("docker")


@pytest.fixture
def n1(make_node: MakeNode) -> GameNode:
    return make_node("n1")


def versions_of(card: GameCard) -> list[str]:
    return [v.version for v in sorted_versions(card)]


def default_of(services: Services, id: str) -> str | None:
    v = default_version(services.gamecards.get_card(id))
    return v.version if v else None


# --- CRUD -------------------------------------------------------------------


def test_create_stores_the_card(services: Services, docker: Platform, clock: Any) -> None:
    card = services.gamecards.create_card(
        {
            "id": "quake",
            "name": "Quake",
            "description": "arena",
            "platform": "docker",
            "labels": {"genre": "fps"},
            "versions": [{"version": "1.0.0", "image": "q:1"}],
        }
    )

    assert (card.name, card.platform, card.labels) == ("Quake", "docker", {"genre": "fps"})
    assert card.created_at == card.updated_at == clock.now
    assert [v.version for v in card.versions] == ["1.0.0"]
    assert card.versions[0].status == GameCardStatus.ACTIVE
    assert services.gamecards.get_card("quake") == card


def test_create_ignores_the_times_the_server_owns(services: Services, clock: Any) -> None:
    card = services.gamecards.create_card(
        {"id": "q", "name": "Q", "created_at": datetime(2000, 1, 1, tzinfo=UTC)}
    )

    assert card.created_at == clock.now


def test_create_refuses_a_duplicate(services: Services, make_card: MakeCard) -> None:
    first = make_card("quake", name="first")

    with pytest.raises(Conflict, match="game card 'quake' already exists"):
        make_card("quake", name="second")
    assert services.gamecards.get_card("quake") == first


def test_create_refuses_an_unknown_platform(services: Services, make_card: MakeCard) -> None:
    with pytest.raises(InvalidInput, match="platform: no platform 'ghost'"):
        make_card("quake", platform="ghost")
    with pytest.raises(NotFound):
        services.gamecards.get_card("quake")


@pytest.mark.parametrize(
    ("fields", "words"),
    [
        ({"versions": [{"version": "1.0", "image": "i"}]}, "versions[0].version"),
        ({"versions": [{"version": "1.0.0"}]}, "versions[0].image"),
        (
            {"versions": [{"version": "1.0.0", "image": "a"}, {"version": "1.0.0", "image": "b"}]},
            "listed twice",
        ),
        ({"name": ""}, "name"),
        ({"labels": {"genre": "first person"}}, "labels.genre"),
        ({"versions": [{"version": "1.0.0", "image": "i"}], "default_version": "2.0.0"}, "default_version"),
        (
            {
                "versions": [{"version": "1.0.0", "image": "i", "status": "deprecated"}],
                "default_version": "1.0.0",
            },
            "default_version: '1.0.0' is deprecated",
        ),
    ],
)
def test_create_refuses_bad_fields(services: Services, fields: dict[str, Any], words: str) -> None:
    with pytest.raises(InvalidInput) as info:
        services.gamecards.create_card({"id": "quake", "name": "Quake", **fields})

    assert words in str(info.value)
    assert services.gamecards.list_cards().total == 0


def test_get_of_an_unknown_card_is_not_found(services: Services) -> None:
    with pytest.raises(NotFound, match="game card 'ghost' not found"):
        services.gamecards.get_card("ghost")


def test_update_replaces_the_given_fields(
    services: Services, make_card: MakeCard, docker: Platform, clock: Any
) -> None:
    old = make_card("quake", versions=["1.0.0"], description="old")
    clock.advance(5)

    card = services.gamecards.update_card("quake", {"name": "Quake III", "platform": "docker"})

    assert (card.name, card.platform, card.description) == ("Quake III", "docker", "old")
    assert card.versions == old.versions
    assert (card.created_at, card.updated_at) == (old.created_at, clock.now)
    assert services.gamecards.get_card("quake") == card


@pytest.mark.parametrize(
    ("changes", "error", "words"),
    [
        ({"id": "doom"}, InvalidInput, "id"),
        ({"platform": "ghost"}, InvalidInput, "platform: no platform 'ghost'"),
        ({"default_version": "9.9.9"}, InvalidInput, "default_version"),
        ({"versions": [{"version": "x", "image": "i"}]}, InvalidInput, "versions[0].version"),
        ({"bogus": 1}, InvalidInput, "bogus"),
    ],
)
def test_update_refuses_bad_changes(
    services: Services, make_card: MakeCard, changes: dict[str, Any], error: type[Exception], words: str
) -> None:
    before = make_card("quake", versions=["1.0.0"])

    with pytest.raises(error) as info:
        services.gamecards.update_card("quake", changes)
    assert words in str(info.value)
    assert services.gamecards.get_card("quake") == before


def test_update_of_an_unknown_card_is_not_found(services: Services) -> None:
    with pytest.raises(NotFound):
        services.gamecards.update_card("ghost", {"name": "x"})


def test_delete_removes_the_card(services: Services, make_card: MakeCard) -> None:
    make_card("quake")

    assert services.gamecards.delete_card("quake").id == "quake"
    with pytest.raises(NotFound):
        services.gamecards.get_card("quake")
    with pytest.raises(NotFound):
        services.gamecards.delete_card("quake")


def test_delete_is_refused_while_a_live_instance_uses_the_card(
    services: Services, make_card: MakeCard, n1: GameNode
) -> None:
    make_card("quake", versions=["1.0.0"])
    services.instances.create_instance({"node_id": "n1", "id": "i1", "game": "quake"})

    with pytest.raises(Conflict, match="live instance"):
        services.gamecards.delete_card("quake")
    assert services.gamecards.get_card("quake").id == "quake"

    services.instances.transition("i1", "failed")
    services.gamecards.delete_card("quake")
    with pytest.raises(NotFound):
        services.gamecards.get_card("quake")


# --- versions ---------------------------------------------------------------


def test_add_version_adds_an_active_version(services: Services, make_card: MakeCard, clock: Any) -> None:
    make_card("quake", versions=["1.0.0"])
    clock.advance(5)

    card = services.gamecards.add_version(
        "quake", {"version": "1.1.0", "image": "q:1.1", "params": {"tick": 60}, "resources": {"cpu": 2}}
    )

    added = next(v for v in card.versions if v.version == "1.1.0")
    assert (added.image, added.params, added.resources.cpu) == ("q:1.1", {"tick": 60}, 2)
    assert added.status == GameCardStatus.ACTIVE
    assert added.created_at == card.updated_at == clock.now
    assert versions_of(services.gamecards.get_card("quake")) == ["1.1.0", "1.0.0"]


def test_add_version_refuses_a_duplicate(services: Services, make_card: MakeCard) -> None:
    before = make_card("quake", versions=["1.0.0"])

    with pytest.raises(Conflict, match=r"already has version 1\.0\.0"):
        services.gamecards.add_version("quake", {"version": "1.0.0", "image": "other"})
    assert services.gamecards.get_card("quake") == before


@pytest.mark.parametrize("version", ["1.0", "latest", "1.0.0-01", "01.0.0", ""])
def test_add_version_refuses_a_bad_semver(services: Services, make_card: MakeCard, version: str) -> None:
    before = make_card("quake", versions=["1.0.0"])

    with pytest.raises(InvalidInput, match="version"):
        services.gamecards.add_version("quake", {"version": version, "image": "i"})
    assert services.gamecards.get_card("quake") == before


def test_add_version_to_an_unknown_card_is_not_found(services: Services) -> None:
    with pytest.raises(NotFound):
        services.gamecards.add_version("ghost", {"version": "1.0.0", "image": "i"})


def test_versions_are_listed_newest_first_by_semver(services: Services, make_card: MakeCard) -> None:
    card = make_card(
        "quake",
        versions=[
            "1.9.0",
            "1.0.0-rc.1",
            "1.10.0",
            "1.0.0",
            "0.9.0",
            "1.10.0-beta.2",
            "1.10.0-beta.11",
            "1.0.0-alpha",
        ],
    )

    assert versions_of(card) == [
        "1.10.0",
        "1.10.0-beta.11",
        "1.10.0-beta.2",
        "1.9.0",
        "1.0.0",
        "1.0.0-rc.1",
        "1.0.0-alpha",
        "0.9.0",
    ]


def test_the_default_is_the_newest_active_version(services: Services, make_card: MakeCard) -> None:
    make_card("quake", versions=["1.9.0", "1.10.0", "1.2.0"])
    assert default_of(services, "quake") == "1.10.0"

    services.gamecards.deprecate_version("quake", "1.10.0")  # not the explicit default: allowed
    assert default_of(services, "quake") == "1.9.0"

    services.gamecards.set_version_status("quake", "1.10.0", "active")
    assert default_of(services, "quake") == "1.10.0"


def test_a_release_is_newer_than_its_release_candidate(services: Services, make_card: MakeCard) -> None:
    make_card("quake", versions=["1.0.0", "1.0.0-rc.1"])

    assert default_of(services, "quake") == "1.0.0"


def test_a_card_without_versions_has_no_default(services: Services, make_card: MakeCard) -> None:
    make_card("quake")

    assert default_of(services, "quake") is None


def test_the_explicit_default_wins_and_can_be_cleared(services: Services, make_card: MakeCard) -> None:
    make_card("quake", versions=["1.0.0", "2.0.0"])

    card = services.gamecards.set_default_version("quake", "1.0.0")
    assert card.default_version == "1.0.0"
    assert default_of(services, "quake") == "1.0.0"

    assert services.gamecards.set_default_version("quake", None).default_version is None
    assert default_of(services, "quake") == "2.0.0"


def test_a_deprecated_version_cannot_become_the_default(services: Services, make_card: MakeCard) -> None:
    make_card("quake", versions=["1.0.0", "2.0.0"])
    services.gamecards.deprecate_version("quake", "1.0.0")

    with pytest.raises(Conflict, match="deprecated"):
        services.gamecards.set_default_version("quake", "1.0.0")
    assert services.gamecards.get_card("quake").default_version is None


def test_an_unknown_version_cannot_become_the_default(services: Services, make_card: MakeCard) -> None:
    make_card("quake", versions=["1.0.0"])

    with pytest.raises(NotFound, match=r"quake@9\.0\.0"):
        services.gamecards.set_default_version("quake", "9.0.0")


def test_the_explicit_default_cannot_be_deprecated(services: Services, make_card: MakeCard) -> None:
    make_card("quake", versions=["1.0.0", "2.0.0"], default_version="1.0.0")

    with pytest.raises(Conflict, match="choose another default"):
        services.gamecards.deprecate_version("quake", "1.0.0")
    assert services.gamecards.get_card("quake").versions[0].status == GameCardStatus.ACTIVE

    services.gamecards.set_default_version("quake", "2.0.0")
    card = services.gamecards.deprecate_version("quake", "1.0.0")
    assert {v.version: v.status for v in card.versions} == {
        "1.0.0": GameCardStatus.DEPRECATED,
        "2.0.0": GameCardStatus.ACTIVE,
    }


def test_set_version_status_refuses_an_unknown_status(services: Services, make_card: MakeCard) -> None:
    before = make_card("quake", versions=["1.0.0"])

    with pytest.raises(InvalidInput, match="status"):
        services.gamecards.set_version_status("quake", "1.0.0", "retired")
    assert services.gamecards.get_card("quake") == before


def test_set_version_status_of_an_unknown_version_is_not_found(
    services: Services, make_card: MakeCard
) -> None:
    make_card("quake", versions=["1.0.0"])

    with pytest.raises(NotFound, match=r"game version 'quake@2\.0\.0'"):
        services.gamecards.deprecate_version("quake", "2.0.0")


def test_remove_version(services: Services, make_card: MakeCard) -> None:
    make_card("quake", versions=["1.0.0", "2.0.0"])

    card = services.gamecards.remove_version("quake", "2.0.0")

    assert versions_of(card) == ["1.0.0"]
    assert versions_of(services.gamecards.get_card("quake")) == ["1.0.0"]
    with pytest.raises(NotFound):
        services.gamecards.remove_version("quake", "2.0.0")


def test_the_explicit_default_cannot_be_removed(services: Services, make_card: MakeCard) -> None:
    make_card("quake", versions=["1.0.0", "2.0.0"], default_version="2.0.0")

    with pytest.raises(Conflict, match="default"):
        services.gamecards.remove_version("quake", "2.0.0")
    assert versions_of(services.gamecards.get_card("quake")) == ["2.0.0", "1.0.0"]


def test_a_version_used_by_a_live_instance_cannot_be_removed(
    services: Services, make_card: MakeCard, n1: GameNode
) -> None:
    make_card("quake", versions=["1.0.0", "2.0.0"])
    services.instances.create_instance(
        {"node_id": "n1", "id": "i1", "game": "quake", "game_version": "1.0.0"}
    )

    with pytest.raises(Conflict, match="used by live instance"):
        services.gamecards.remove_version("quake", "1.0.0")
    services.gamecards.remove_version("quake", "2.0.0")  # other versions are free

    services.instances.transition("i1", "stopping")
    services.instances.transition("i1", "stopped")
    assert versions_of(services.gamecards.remove_version("quake", "1.0.0")) == []


# --- listing ----------------------------------------------------------------


@pytest.fixture
def catalogue(
    services: Services, make_card: MakeCard, make_platform: Callable[..., Platform], clock: Any
) -> Services:
    make_platform("docker")
    make_platform("steam")
    clock.advance(1)
    make_card("quake", name="Quake Arena", platform="docker", versions=["1.0.0"], labels={"genre": "fps"})
    clock.advance(1)
    make_card("doom", name="DOOM", platform="docker", versions=["2.0.0"], labels={"genre": "fps", "old": ""})
    clock.advance(1)
    make_card("chess", name="Chess", platform="steam", versions=["1.0.0"], labels={"genre": "board"})
    clock.advance(1)
    make_card("empty", name="Nothing yet")
    services.gamecards.deprecate_version("chess", "1.0.0")
    return services


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ({}, ["chess", "doom", "empty", "quake"]),
        ({"q": "QUAKE"}, ["quake"]),
        ({"q": "oo"}, ["doom"]),
        ({"q": "arena"}, ["quake"]),  # the name counts too
        ({"platform": "docker"}, ["doom", "quake"]),
        ({"platform": "steam"}, ["chess"]),
        ({"status": "active"}, ["doom", "quake"]),
        ({"status": "deprecated"}, ["chess", "empty"]),  # no active version at all
        ({"selector": "genre=fps"}, ["doom", "quake"]),
        ({"selector": "genre=fps,!old"}, ["quake"]),
        ({"selector": "genre notin (fps)"}, ["chess", "empty"]),
        ({"platform": "docker", "q": "d"}, ["doom"]),
        ({"sort": "-created_at"}, ["empty", "chess", "doom", "quake"]),
        ({"sort": "name"}, ["chess", "doom", "empty", "quake"]),
        ({"sort": "platform,-id"}, ["empty", "quake", "doom", "chess"]),
    ],
)
def test_list_filters_and_sorts(catalogue: Services, query: dict[str, Any], expected: list[str]) -> None:
    page = catalogue.gamecards.list_cards(GameCardQuery(**query))

    assert [c.id for c in page.items] == expected
    assert page.total == len(expected)


def test_list_pages(catalogue: Services) -> None:
    page = catalogue.gamecards.list_cards(GameCardQuery(limit=2, offset=1))

    assert [c.id for c in page.items] == ["doom", "empty"]
    assert page.total == 4


@pytest.mark.parametrize(
    ("query", "words"),
    [({"sort": "versions"}, "unknown field 'versions'"), ({"selector": "genre in"}, "column")],
)
def test_list_refuses_a_bad_query(catalogue: Services, query: dict[str, Any], words: str) -> None:
    with pytest.raises(InvalidInput, match=words):
        catalogue.gamecards.list_cards(GameCardQuery(**query))
