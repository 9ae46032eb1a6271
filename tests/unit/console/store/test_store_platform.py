"""PlatformStore persists config maps and state."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from console.errors import Conflict, NotFound
from console.models import Platform, PlatformState
from console.store import PlatformStore

MakePlatform = Callable[..., Platform]
Reopen = Callable[[Any], Any]

CONFIG: dict[str, Any] = {
    "runtime": {"image": "registry.local/steamcmd:latest", "user": 1000, "read_only": True},
    "volumes": [{"name": "data", "size_gb": 20.5, "paths": ["/srv/game", "/srv/logs"]}, {"name": "tmp"}],
    "env": {"TZ": "UTC", "EMPTY": "", "NULLED": None, "NUMBERISH": "0012", "BOOLISH": "no"},
    "limits": {"restart": {"max": 3, "backoff_s": [1, 2, 4]}},
    "a key with spaces": "value: with colon",
    "unicode-ключ": "值",
}


def test_crud(platform_store: PlatformStore, make_platform: MakePlatform, reopen: Reopen) -> None:
    platform = make_platform(
        "steam",
        description="SteamCMD servers",
        pipeline="steam-start",
        params={"branch": "public"},
        required_labels={"os": "linux", "arch": "amd64"},
    )
    platform_store.add(platform)
    assert reopen(platform_store).get("steam") == platform

    platform_store.update(platform.model_copy(update={"pipeline": "steam-start-v2"}))
    assert reopen(platform_store).get("steam").pipeline == "steam-start-v2"

    platform_store.delete("steam")
    with pytest.raises(NotFound, match="platform 'steam' not found"):
        reopen(platform_store).get("steam")


def test_duplicate_platform_is_a_conflict(platform_store: PlatformStore, make_platform: MakePlatform) -> None:
    platform_store.add(make_platform("p1"))
    with pytest.raises(Conflict, match="platform 'p1' already exists"):
        platform_store.add(make_platform("p1"))


def test_a_nested_config_map_is_persisted(
    platform_store: PlatformStore, make_platform: MakePlatform, reopen: Reopen
) -> None:
    platform_store.add(make_platform("p1", config=CONFIG))
    back = reopen(platform_store).get("p1")
    assert back.config == CONFIG
    assert back.config["env"]["NUMBERISH"] == "0012"
    assert back.config["env"]["BOOLISH"] == "no"
    assert back.config["volumes"][0]["size_gb"] == 20.5


def test_config_changes_are_persisted(
    platform_store: PlatformStore, make_platform: MakePlatform, reopen: Reopen
) -> None:
    platform_store.add(make_platform("p1", config=CONFIG))

    def change(p: Platform) -> Platform:
        config = {k: v for k, v in p.config.items() if k != "volumes"}
        config["runtime"] = {**config["runtime"], "user": 0}
        config["added"] = {"deep": [{"x": 1}]}
        return p.model_copy(update={"config": config})

    platform_store.mutate("p1", change)
    back = reopen(platform_store).get("p1")
    assert "volumes" not in back.config
    assert back.config["runtime"]["user"] == 0
    assert back.config["added"] == {"deep": [{"x": 1}]}


@pytest.mark.parametrize("state", list(PlatformState))
def test_state_is_persisted(
    platform_store: PlatformStore, make_platform: MakePlatform, reopen: Reopen, state: PlatformState
) -> None:
    start = PlatformState.DISABLED if state == PlatformState.ENABLED else PlatformState.ENABLED
    platform_store.add(make_platform("p1", state=start))
    platform_store.mutate("p1", lambda p: p.model_copy(update={"state": state}))
    back = reopen(platform_store).get("p1")
    assert back.state == state
    assert isinstance(back.state, PlatformState)
