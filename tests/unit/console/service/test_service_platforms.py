"""PlatformService: CRUD, enabling, the config map, listing, and refusing to delete what is in use."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest

from console.errors import Conflict, InvalidInput, NotFound
from console.models import Platform, PlatformState
from console.service import PlatformQuery, Services

MakePlatform = Callable[..., Platform]


# --- CRUD -------------------------------------------------------------------


def test_create_fills_defaults(services: Services, clock: Any) -> None:
    p = services.platforms.create_platform({"id": "docker", "name": "Docker"})

    assert (p.pipeline, p.state, p.config, p.params, p.required_labels) == (
        "platform-start",
        PlatformState.ENABLED,
        {},
        {},
        {},
    )
    assert p.created_at == p.updated_at == clock.now
    assert services.platforms.get_platform("docker") == p


def test_create_ignores_the_times_the_server_owns(services: Services, clock: Any) -> None:
    p = services.platforms.create_platform(
        {"id": "docker", "name": "Docker", "updated_at": datetime(2000, 1, 1, tzinfo=UTC)}
    )

    assert p.updated_at == clock.now


def test_create_refuses_a_duplicate(services: Services, make_platform: MakePlatform) -> None:
    make_platform("docker")

    with pytest.raises(Conflict, match="platform 'docker' already exists"):
        make_platform("docker")


@pytest.mark.parametrize(
    ("fields", "path"),
    [
        ({"pipeline": "../etc"}, "pipeline"),
        ({"state": "paused"}, "state"),
        ({"required_labels": {"gpu": "a b"}}, "required_labels.gpu"),
        ({"config": {"": 1}}, "config"),
        ({"name": ""}, "name"),
        ({"id": ".hidden"}, "id"),
    ],
)
def test_create_refuses_bad_fields_naming_their_path(
    services: Services, fields: dict[str, Any], path: str
) -> None:
    with pytest.raises(InvalidInput) as info:
        services.platforms.create_platform({"id": "docker", "name": "Docker", **fields})

    assert any(d.path.startswith(path) for d in info.value.details)
    assert services.platforms.list_platforms().total == 0


def test_get_of_an_unknown_platform_is_not_found(services: Services) -> None:
    with pytest.raises(NotFound, match="platform 'ghost' not found"):
        services.platforms.get_platform("ghost")


def test_update_replaces_the_given_fields(
    services: Services, make_platform: MakePlatform, clock: Any
) -> None:
    old = make_platform("docker", description="containers", params={"a": 1})
    clock.advance(5)

    p = services.platforms.update_platform("docker", {"name": "Docker CE", "pipeline": "docker-start"})

    assert (p.name, p.pipeline, p.description, p.params) == (
        "Docker CE",
        "docker-start",
        "containers",
        {"a": 1},
    )
    assert (p.created_at, p.updated_at) == (old.created_at, clock.now)
    assert services.platforms.get_platform("docker") == p


@pytest.mark.parametrize(
    ("changes", "words"),
    [({"id": "podman"}, "id"), ({"pipeline": "a b"}, "pipeline"), ({"colour": "red"}, "colour")],
)
def test_update_refuses_bad_changes(
    services: Services, make_platform: MakePlatform, changes: dict[str, Any], words: str
) -> None:
    before = make_platform("docker")

    with pytest.raises(InvalidInput, match=words):
        services.platforms.update_platform("docker", changes)
    assert services.platforms.get_platform("docker") == before


def test_update_of_an_unknown_platform_is_not_found(services: Services) -> None:
    with pytest.raises(NotFound):
        services.platforms.update_platform("ghost", {"name": "x"})


def test_delete_removes_the_platform(services: Services, make_platform: MakePlatform) -> None:
    make_platform("docker")

    assert services.platforms.delete_platform("docker").id == "docker"
    with pytest.raises(NotFound):
        services.platforms.get_platform("docker")
    with pytest.raises(NotFound):
        services.platforms.delete_platform("docker")


def test_delete_is_refused_while_a_game_card_uses_the_platform(
    services: Services, make_platform: MakePlatform, make_card: Callable[..., Any]
) -> None:
    make_platform("docker")
    make_card("quake", platform="docker")

    with pytest.raises(Conflict, match=r"used by game card.*quake"):
        services.platforms.delete_platform("docker")

    services.gamecards.update_card("quake", {"platform": None})
    services.platforms.delete_platform("docker")


def test_delete_is_refused_while_a_live_instance_runs_on_the_platform(
    services: Services, make_platform: MakePlatform, make_node: Callable[..., Any]
) -> None:
    make_platform("docker")
    make_node("n1")
    services.instances.create_instance({"node_id": "n1", "id": "i1", "platform": "docker"})

    with pytest.raises(Conflict, match=r"live instance.*i1"):
        services.platforms.delete_platform("docker")
    assert services.platforms.get_platform("docker").id == "docker"

    services.instances.transition("i1", "failed")
    services.platforms.delete_platform("docker")


# --- enable and disable -----------------------------------------------------


def test_disable_and_enable(services: Services, make_platform: MakePlatform, clock: Any) -> None:
    make_platform("docker")
    clock.advance(5)

    disabled = services.platforms.disable("docker")
    assert disabled.state == PlatformState.DISABLED
    assert disabled.updated_at == clock.now
    assert services.platforms.get_platform("docker").state == PlatformState.DISABLED

    clock.advance(5)
    enabled = services.platforms.enable("docker")
    assert (enabled.state, enabled.updated_at) == (PlatformState.ENABLED, clock.now)


@pytest.mark.parametrize("state", ["enabled", "disabled"])
def test_setting_the_current_state_changes_nothing(
    services: Services, make_platform: MakePlatform, clock: Any, state: str
) -> None:
    make_platform("docker", state=state)
    before = services.platforms.get_platform("docker")
    clock.advance(5)

    assert services.platforms.set_state("docker", state) == before
    assert services.platforms.get_platform("docker").updated_at == before.updated_at


def test_an_unknown_state_is_invalid(services: Services, make_platform: MakePlatform) -> None:
    make_platform("docker")

    with pytest.raises(InvalidInput, match="state: must be enabled or disabled"):
        services.platforms.set_state("docker", "paused")


def test_enabling_an_unknown_platform_is_not_found(services: Services) -> None:
    with pytest.raises(NotFound):
        services.platforms.enable("ghost")


# --- config map -------------------------------------------------------------


def test_set_config_merges(services: Services, make_platform: MakePlatform) -> None:
    make_platform("docker", config={"registry": "r1", "pull": "always"})

    p = services.platforms.set_config("docker", {"pull": "missing", "network": {"mode": "host"}})

    assert p.config == {"registry": "r1", "pull": "missing", "network": {"mode": "host"}}
    assert services.platforms.get_config("docker") == p.config


def test_set_config_may_replace_the_whole_map(services: Services, make_platform: MakePlatform) -> None:
    make_platform("docker", config={"registry": "r1", "pull": "always"})

    p = services.platforms.set_config("docker", {"pull": "never"}, replace=True)

    assert p.config == {"pull": "never"}
    assert services.platforms.get_config("docker") == {"pull": "never"}


def test_get_config_gives_one_key_or_not_found(services: Services, make_platform: MakePlatform) -> None:
    make_platform("docker", config={"registry": "r1", "empty": None})

    assert services.platforms.get_config("docker", "registry") == "r1"
    assert services.platforms.get_config("docker", "empty") is None  # present, if null
    with pytest.raises(NotFound, match="config key 'docker/missing'"):
        services.platforms.get_config("docker", "missing")


def test_get_config_hands_out_a_copy(services: Services, make_platform: MakePlatform) -> None:
    make_platform("docker", config={"a": 1})

    services.platforms.get_config("docker")["a"] = 2

    assert services.platforms.get_config("docker") == {"a": 1}


def test_delete_config_removes_one_key(services: Services, make_platform: MakePlatform) -> None:
    make_platform("docker", config={"a": 1, "b": 2})

    assert services.platforms.delete_config("docker", "a").config == {"b": 2}
    assert services.platforms.get_config("docker") == {"b": 2}
    with pytest.raises(NotFound, match="config key 'docker/a'"):
        services.platforms.delete_config("docker", "a")


def test_set_config_refuses_an_empty_key(services: Services, make_platform: MakePlatform) -> None:
    make_platform("docker", config={"a": 1})

    with pytest.raises(InvalidInput, match="config"):
        services.platforms.set_config("docker", {"": 1})
    assert services.platforms.get_config("docker") == {"a": 1}


def test_config_of_an_unknown_platform_is_not_found(services: Services) -> None:
    with pytest.raises(NotFound):
        services.platforms.get_config("ghost")
    with pytest.raises(NotFound):
        services.platforms.set_config("ghost", {"a": 1})


# --- listing ----------------------------------------------------------------


@pytest.fixture
def platforms(services: Services, make_platform: MakePlatform, clock: Any) -> Services:
    clock.advance(1)
    make_platform("steam", name="Steam Dedicated", pipeline="steamcmd")
    clock.advance(1)
    make_platform("docker", name="Docker")
    clock.advance(1)
    make_platform("podman", name="Podman", state="disabled")
    return services


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ({}, ["docker", "podman", "steam"]),
        ({"state": "enabled"}, ["docker", "steam"]),
        ({"state": "disabled"}, ["podman"]),
        ({"pipeline": "platform-start"}, ["docker", "podman"]),
        ({"pipeline": "steamcmd"}, ["steam"]),
        ({"q": "DOCK"}, ["docker"]),
        ({"q": "dedicated"}, ["steam"]),  # the name counts too
        ({"q": "man", "state": "enabled"}, []),
        ({"sort": "-created_at"}, ["podman", "docker", "steam"]),
        ({"sort": "-state,pipeline,id"}, ["docker", "steam", "podman"]),
        ({"sort": "state,-pipeline"}, ["podman", "steam", "docker"]),
    ],
)
def test_list_filters_and_sorts(platforms: Services, query: dict[str, Any], expected: list[str]) -> None:
    page = platforms.platforms.list_platforms(PlatformQuery(**query))

    assert [p.id for p in page.items] == expected
    assert page.total == len(expected)


def test_list_pages(platforms: Services) -> None:
    page = platforms.platforms.list_platforms(PlatformQuery(limit=1, offset=1))

    assert [p.id for p in page.items] == ["podman"]
    assert page.total == 3


def test_list_refuses_an_unknown_sort_field(platforms: Services) -> None:
    with pytest.raises(InvalidInput, match="unknown field 'config'"):
        platforms.platforms.list_platforms(PlatformQuery(sort="config"))
