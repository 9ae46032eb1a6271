"""Fixtures for the service tests: services over fresh stores and a clock that moves only when told."""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from console.models import GameCard, GameNode, Instance, Platform
from console.service import Services
from console.store import Stores

START = datetime(2024, 1, 1, 12, 0, tzinfo=UTC)

BIG_NODE_HARDWARE = {"cpu": {"model": "EPYC", "cores": 16}, "memory_mb": 65536, "gpus": [{"model": "L4"}] * 2}


class FakeClock:
    """Returns the same time until `advance()` moves it."""

    def __init__(self, start: datetime = START) -> None:
        self.now = start

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float = 1.0) -> datetime:
        self.now += timedelta(seconds=seconds)
        return self.now


@contextmanager
def _open_services(path: Path, clock: FakeClock) -> Iterator[Services]:
    stores = Stores.open(path)
    try:
        services = Services.over(stores)
        for service in (services.nodes, services.instances, services.gamecards, services.platforms):
            service.clock = clock
        yield services
    finally:
        stores.close()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def services(tmp_path: Path, clock: FakeClock) -> Iterator[Services]:
    with _open_services(tmp_path / "data", clock) as services:
        yield services


@pytest.fixture(scope="session")
def fresh_services() -> Callable[[], AbstractContextManager[Services]]:
    """For hypothesis tests: every example opens its own stores in a new temporary directory.

    Function-scoped fixtures are not reset between the examples of one test.
    """

    @contextmanager
    def open_fresh() -> Iterator[Services]:
        with tempfile.TemporaryDirectory() as tmp, _open_services(Path(tmp), FakeClock()) as services:
            yield services

    return open_fresh


@pytest.fixture
def make_node(services: Services) -> Callable[..., GameNode]:
    """Create a node: `make_node("n1", status="online", labels={...})`; type defaults to physical."""

    def make(id: str = "n1", **fields: Any) -> GameNode:
        return services.nodes.create_node({"name": f"node {id}", "type": "physical", **fields, "id": id})

    return make


@pytest.fixture
def make_platform(services: Services) -> Callable[..., Platform]:
    def make(id: str = "docker", **fields: Any) -> Platform:
        return services.platforms.create_platform({"name": f"platform {id}", **fields, "id": id})

    return make


@pytest.fixture
def make_card(services: Services) -> Callable[..., GameCard]:
    """Create a game card; `versions` may be plain version strings (image `img:<version>`)."""

    def make(
        id: str = "quake", versions: list[str | dict[str, Any]] | None = None, **fields: Any
    ) -> GameCard:
        listed = [{"version": v, "image": f"img:{v}"} if isinstance(v, str) else v for v in versions or []]
        return services.gamecards.create_card({"name": f"game {id}", **fields, "id": id, "versions": listed})

    return make


@pytest.fixture
def make_instance(services: Services) -> Callable[..., Instance]:
    def make(node_id: str = "n1", **fields: Any) -> Instance:
        return services.instances.create_instance({"node_id": node_id, **fields})

    return make
