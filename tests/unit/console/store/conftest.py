"""Shared fixtures for the store tests: record factories and stores on `tmp_path`."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import pytest

from console.models import GameCard, GameNode, GameVersion, Instance, Platform
from console.store import GameCardStore, InstanceStore, NodeStore, PlatformStore, YamlStore

S = TypeVar("S", bound=YamlStore[Any])

T0 = datetime(2024, 5, 1, 12, 30, 0, 123456, tzinfo=UTC)
"""A fixed time, so records compare equal however often they are built."""


def _node(id: str, **fields: Any) -> GameNode:
    base: dict[str, Any] = {"name": f"node {id}", "type": "physical", "created_at": T0, "updated_at": T0}
    return GameNode(id=id, **{**base, **fields})


def _instance(id: str, **fields: Any) -> Instance:
    base: dict[str, Any] = {"node_id": "n1", "created_at": T0, "updated_at": T0}
    return Instance(id=id, **{**base, **fields})


def _gamecard(id: str, **fields: Any) -> GameCard:
    base: dict[str, Any] = {"name": f"game {id}", "created_at": T0, "updated_at": T0}
    return GameCard(id=id, **{**base, **fields})


def _version(version: str, **fields: Any) -> GameVersion:
    base: dict[str, Any] = {"image": f"registry.local/game:{version}", "created_at": T0}
    return GameVersion(version=version, **{**base, **fields})


def _platform(id: str, **fields: Any) -> Platform:
    base: dict[str, Any] = {"name": f"platform {id}", "created_at": T0, "updated_at": T0}
    return Platform(id=id, **{**base, **fields})


@pytest.fixture
def make_node() -> Callable[..., GameNode]:
    return _node


@pytest.fixture
def make_instance() -> Callable[..., Instance]:
    return _instance


@pytest.fixture
def make_gamecard() -> Callable[..., GameCard]:
    return _gamecard


@pytest.fixture
def make_version() -> Callable[..., GameVersion]:
    return _version


@pytest.fixture
def make_platform() -> Callable[..., Platform]:
    return _platform


def _loaded(cls: type[S], root: Path) -> S:
    store = cls(root)
    store.load()
    return store


@pytest.fixture
def reopen() -> Callable[[S], S]:
    """A fresh store object of the same kind on the same directory, loaded from disk."""

    def _reopen(store: S) -> S:
        return _loaded(type(store), store.root)

    return _reopen


@pytest.fixture
def node_store(tmp_path: Path) -> NodeStore:
    return _loaded(NodeStore, tmp_path / "nodes")


@pytest.fixture
def instance_store(tmp_path: Path) -> InstanceStore:
    return _loaded(InstanceStore, tmp_path / "instances")


@pytest.fixture
def gamecard_store(tmp_path: Path) -> GameCardStore:
    return _loaded(GameCardStore, tmp_path / "gamecards")


@pytest.fixture
def platform_store(tmp_path: Path) -> PlatformStore:
    return _loaded(PlatformStore, tmp_path / "platforms")
