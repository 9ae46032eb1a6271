"""`agent.runtime.DockerRuntime`: without Docker the runtime is "unavailable: ...", never an exception."""

from __future__ import annotations

import sys
import types
from pathlib import Path
from typing import Any

import pytest

from agent.runtime import INSTANCE_LABEL, DockerRuntime


def test_missing_socket_is_unavailable_without_importing_the_sdk(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("DOCKER_HOST", raising=False)
    monkeypatch.setitem(sys.modules, "docker", None)  # importing it would fail loudly
    runtime = DockerRuntime(socket_path=str(tmp_path / "docker.sock"))
    assert runtime.count_instances() is None
    assert runtime.status.startswith("unavailable: no Docker socket at ")
    runtime.close()


def test_docker_host_unix_socket_is_checked_too(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/nope.sock")
    monkeypatch.setitem(sys.modules, "docker", None)
    runtime = DockerRuntime()
    assert runtime.count_instances() is None
    assert "nope.sock" in runtime.status


class _FakeContainers:
    def __init__(self, running: int, fail: bool) -> None:
        self.running = running
        self.fail = fail
        self.filters: list[Any] = []

    def list(self, filters: dict[str, str], sparse: bool) -> list[object]:
        self.filters.append(filters)
        if self.fail:
            raise RuntimeError("Error while fetching server API version\nmore detail")
        return [object()] * self.running


def test_counts_labelled_containers_and_recovers(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    sock = tmp_path / "docker.sock"
    sock.touch()
    containers = _FakeContainers(running=3, fail=False)
    client = types.SimpleNamespace(containers=containers, close=lambda: None)
    fake_sdk: Any = types.ModuleType("docker")
    fake_sdk.from_env = lambda timeout: client
    monkeypatch.delenv("DOCKER_HOST", raising=False)
    monkeypatch.setitem(sys.modules, "docker", fake_sdk)
    runtime = DockerRuntime(socket_path=str(sock))
    assert runtime.count_instances() == 3
    assert runtime.status == "available"
    assert containers.filters == [{"label": INSTANCE_LABEL}]
    containers.fail = True
    assert runtime.count_instances() is None
    assert runtime.status == "unavailable: Error while fetching server API version"
    containers.fail = False
    assert runtime.count_instances() == 3
    assert runtime.status == "available"
