"""`agent.state.StateStore`: atomic state.json, private permissions, bounded executed ids."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest

from agent.errors import StateError
from agent.state import CommandOutcome, StateStore


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_fresh_dir_has_defaults_and_private_permissions(tmp_path: Path) -> None:
    store = StateStore(tmp_path / "state")
    assert store.state.next_seq == 1
    assert store.state.last_command_seq == 0
    assert store.state.session_id == ""
    assert _mode(tmp_path / "state") == 0o700
    store.save()
    assert _mode(store.path) == 0o600


def test_existing_dir_is_tightened(tmp_path: Path) -> None:
    loose = tmp_path / "loose"
    loose.mkdir(mode=0o755)
    loose.chmod(0o755)
    StateStore(loose)
    assert _mode(loose) == 0o700


def test_save_and_load_round_trip(tmp_path: Path) -> None:
    store = StateStore(tmp_path)
    store.state.next_seq = 42
    store.state.session_id = "s-1"
    store.record("c1", CommandOutcome(True), seq=7)
    store.record("c2", CommandOutcome(False, "boom"), seq=9)
    store.save()
    again = StateStore(tmp_path)
    assert again.state.next_seq == 42
    assert again.state.session_id == "s-1"
    assert again.state.last_command_seq == 9
    assert again.outcome("c1") == CommandOutcome(True, "")
    assert again.outcome("c2") == CommandOutcome(False, "boom")
    assert again.outcome("c3") is None


def test_save_leaves_no_temp_files(tmp_path: Path) -> None:
    store = StateStore(tmp_path)
    for i in range(5):
        store.state.next_seq = i + 1
        store.save()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["state.json"]
    assert json.loads((tmp_path / "state.json").read_text())["next_seq"] == 5


def test_executed_ids_are_bounded_oldest_forgotten(tmp_path: Path) -> None:
    store = StateStore(tmp_path, executed_limit=3)
    for i in range(5):
        store.record(f"c{i}", CommandOutcome(True), seq=i)
    assert list(store.state.executed) == ["c2", "c3", "c4"]
    assert store.outcome("c0") is None


def test_recording_again_keeps_the_id_recent(tmp_path: Path) -> None:
    store = StateStore(tmp_path, executed_limit=2)
    store.record("a", CommandOutcome(False, "interrupted"))
    store.record("b", CommandOutcome(True))
    store.record("a", CommandOutcome(True))
    store.record("c", CommandOutcome(True))
    assert list(store.state.executed) == ["a", "c"]
    assert store.outcome("a") == CommandOutcome(True)


def test_last_command_seq_never_goes_back(tmp_path: Path) -> None:
    store = StateStore(tmp_path)
    store.record("a", CommandOutcome(True), seq=10)
    store.record("b", CommandOutcome(True), seq=4)
    assert store.state.last_command_seq == 10


@pytest.mark.parametrize("content", ["{not json", "[1, 2]", '{"executed": [{"ok": true}]}'])
def test_corrupt_state_is_an_error_naming_the_file(tmp_path: Path, content: str) -> None:
    (tmp_path / "state.json").write_text(content)
    with pytest.raises(StateError, match=r"state\.json is corrupt"):
        StateStore(tmp_path)
