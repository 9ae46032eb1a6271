"""What the docker end-to-end tests share: a `Stage` (a fleet with game cards) that cleans up after itself."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fleet_helpers import Fleet
from pipeline_helpers import Stage
from testbed.docker import GameImage


@pytest.fixture
def stage(tmp_path: Path, docker_client: Any, game_image: GameImage) -> Iterator[Stage]:
    fleet = Fleet(tmp_path)
    stage = Stage(fleet, docker_client)
    try:
        yield stage
    finally:
        stage.cleanup()
        fleet.close()
