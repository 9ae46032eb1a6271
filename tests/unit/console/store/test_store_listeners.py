"""YamlStore.subscribe: listeners hear of every write and delete, after it happened."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from console.models import Platform
from console.store import PlatformStore


@pytest.fixture
def store(tmp_path: Path) -> PlatformStore:
    store = PlatformStore(tmp_path / "platforms")
    store.load()
    return store


def test_every_write_and_delete_is_heard(store: PlatformStore) -> None:
    heard: list[tuple[str, str | None]] = []

    def listen(id: str, record: Platform | None) -> None:
        assert (id in store) == (record is not None)  # called after the change is made
        heard.append((id, record.name if record else None))

    store.subscribe(listen)
    store.add(Platform(id="p1", name="one"))
    store.update(Platform(id="p1", name="two"))
    store.put(Platform(id="p2", name="three"))
    store.mutate("p1", lambda p: p.model_copy(update={"name": "four"}))
    store.mutate("p1", lambda p: p)  # no change: no write, nothing to hear
    store.delete("p2")
    assert heard == [("p1", "one"), ("p1", "two"), ("p2", "three"), ("p1", "four"), ("p2", None)]


def test_unsubscribe(store: PlatformStore) -> None:
    heard: list[str] = []
    unsubscribe = store.subscribe(lambda id, _: heard.append(id))
    store.add(Platform(id="p1", name="one"))
    unsubscribe()
    store.add(Platform(id="p2", name="two"))
    assert heard == ["p1"]


def test_a_failing_listener_does_not_fail_the_write(
    store: PlatformStore, caplog: pytest.LogCaptureFixture
) -> None:
    heard: list[str] = []

    def broken(id: str, record: Platform | None) -> None:
        raise RuntimeError("listener bug")

    store.subscribe(broken)
    store.subscribe(lambda id, _: heard.append(id))
    with caplog.at_level(logging.ERROR):
        store.add(Platform(id="p1", name="one"))
    assert "p1" in store and heard == ["p1"]
    assert "listener failed" in caplog.text


def test_failed_writes_are_not_heard(store: PlatformStore) -> None:
    heard: list[str] = []
    store.add(Platform(id="p1", name="one"))
    store.subscribe(lambda id, _: heard.append(id))
    with pytest.raises(Exception, match="already exists"):
        store.add(Platform(id="p1", name="again"))
    assert heard == []
