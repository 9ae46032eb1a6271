"""The data directory: one owner at a time, and every store loaded under it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from console.errors import CorruptData, Unavailable
from console.models import AgentCredential, GameCard, GameNode, Instance, NodeHistory, Platform, StatusChange
from console.store import DataDir, DataDirLocked, Stores

REPO = Path(__file__).resolve().parents[4]
T0 = datetime(2024, 5, 1, 12, 30, tzinfo=UTC)

HOLDER = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    from console.store import DataDir
    DataDir(Path(sys.argv[1])).open()
    print("LOCKED", flush=True)
    sys.stdin.read()
    """
)

TRY_OPEN = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    from console.store import DataDir, DataDirLocked
    try:
        DataDir(Path(sys.argv[1])).open()
    except DataDirLocked as exc:
        print(exc)
        sys.exit(3)
    """
)


def _python(code: str, *args: str, **kw: object) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.Popen(  # type: ignore[call-overload, no-any-return]
        [sys.executable, "-c", code, *args], env=env, text=True, **kw
    )


@pytest.fixture
def other_holder(tmp_path: Path) -> Iterator[subprocess.Popen[str]]:
    """Another process that holds the lock on `tmp_path / "data"` until killed."""
    proc = _python(HOLDER, str(tmp_path / "data"), stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline() == "LOCKED\n"
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.communicate()


# --- the lock ---------------------------------------------------------------------


def test_open_creates_the_directory_and_writes_the_owner_pid(tmp_path: Path) -> None:
    path = tmp_path / "data"
    data_dir = DataDir(path).open()
    try:
        assert path.is_dir()
        assert (path / ".lock").read_text() == f"{os.getpid()}\n"
    finally:
        data_dir.close()


def test_a_second_open_in_the_same_process_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "data"
    first = DataDir(path).open()
    try:
        with pytest.raises(DataDirLocked) as info:
            DataDir(path).open()
        error = info.value
        assert isinstance(error, Unavailable) and error.code == "unavailable"
        assert error.holder == str(os.getpid())
        assert f"pid {os.getpid()}" in str(error)
        assert str(path) in str(error)
        assert (path / ".lock").read_text() == f"{os.getpid()}\n"  # the refused open changed nothing
    finally:
        first.close()


def test_another_process_holding_the_lock_is_named_by_its_pid(
    tmp_path: Path, other_holder: subprocess.Popen[str]
) -> None:
    with pytest.raises(DataDirLocked) as info:
        DataDir(tmp_path / "data").open()
    assert info.value.holder == str(other_holder.pid)
    assert f"pid {other_holder.pid}" in str(info.value)


def test_the_lock_of_a_killed_process_is_released(
    tmp_path: Path, other_holder: subprocess.Popen[str]
) -> None:
    other_holder.send_signal(signal.SIGKILL)
    other_holder.wait()
    data_dir = DataDir(tmp_path / "data").open()  # no stale lock left behind by a crash
    data_dir.close()


def test_another_process_is_refused_while_we_hold_the_lock(tmp_path: Path) -> None:
    path = tmp_path / "data"
    with DataDir(path):
        proc = _python(TRY_OPEN, str(path), stdout=subprocess.PIPE)
        out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 3
    assert f"pid {os.getpid()}" in out


def test_close_releases_the_lock(tmp_path: Path) -> None:
    path = tmp_path / "data"
    first = DataDir(path).open()
    first.close()
    second = DataDir(path).open()
    assert (path / ".lock").read_text() == f"{os.getpid()}\n"
    second.close()
    first.close()  # closing twice is harmless
    assert (path / ".lock").read_text() == ""


def test_the_context_manager_releases_the_lock_on_error(tmp_path: Path) -> None:
    path = tmp_path / "data"
    with pytest.raises(RuntimeError), DataDir(path):
        raise RuntimeError("boom")
    with DataDir(path):
        pass


# --- Stores -----------------------------------------------------------------------


def _one_of_each(stores: Stores) -> dict[str, object]:
    records = {
        "nodes": GameNode(id="n1", name="Node", type="physical", created_at=T0, updated_at=T0),
        "node_history": NodeHistory(
            id="n1", changes=[StatusChange(at=T0, from_status=None, to_status="online", by="admin")]
        ),
        "instances": Instance(id="i1", node_id="n1", created_at=T0, updated_at=T0),
        "gamecards": GameCard(id="g1", name="Game", created_at=T0, updated_at=T0),
        "platforms": Platform(id="p1", name="Platform", created_at=T0, updated_at=T0),
        "credentials": AgentCredential(id="n1", sha256="ab" * 32, created_at=T0),
    }
    for attr, record in records.items():
        getattr(stores, attr).add(record)
    return records


def test_stores_open_loads_every_kind_and_close_releases_the_lock(tmp_path: Path) -> None:
    path = tmp_path / "data"
    stores = Stores.open(path)
    written = _one_of_each(stores)
    stores.close()
    assert {p.name for p in path.iterdir()} == {
        ".lock", "nodes", "node-history", "instances", "gamecards", "platforms", "credentials", "runs",
        "run-secrets", "rollouts", "api_tokens",
    }
    for sub in ("nodes", "node-history", "instances", "gamecards", "platforms", "credentials"):
        assert (path / sub / ".index.json").is_file()  # close() left an index for a quick start

    again = Stores.open(path)
    try:
        for attr, record in written.items():
            assert getattr(again, attr).list() == [record]
    finally:
        again.close()
    DataDir(path).open().close()  # the lock is free again


def test_stores_open_on_a_locked_directory_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "data"
    stores = Stores.open(path)
    try:
        with pytest.raises(DataDirLocked):
            Stores.open(path)
    finally:
        stores.close()


@pytest.mark.parametrize("broken", ["nodes/n1.yaml", "platforms/p1.yaml", "node-history/n1.yaml"])
def test_stores_open_with_a_broken_file_raises_and_releases_the_lock(tmp_path: Path, broken: str) -> None:
    path = tmp_path / "data"
    stores = Stores.open(path)
    _one_of_each(stores)
    stores.close()
    bad = path / broken
    bad.write_text(bad.read_text() + "oops: [\n")

    with pytest.raises(CorruptData) as info:
        Stores.open(path)
    assert info.value.path == str(bad)
    assert bad.read_text().endswith("oops: [\n")
    DataDir(path).open().close()  # the failed open did not keep the lock


def test_close_releases_the_lock_even_when_a_store_fails_to_close(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "data"
    stores = Stores.open(path)

    def failing_close() -> None:
        raise OSError("disk gone")

    monkeypatch.setattr(stores.instances, "close", failing_close)
    with pytest.raises(OSError, match="disk gone"):
        stores.close()
    DataDir(path).open().close()


def test_a_data_dir_is_private_to_its_owner(tmp_path: Path) -> None:
    path = tmp_path / "data"
    with DataDir(path):
        assert (path.stat().st_mode & 0o777) == 0o700
        assert ((path / ".lock").stat().st_mode & 0o777) == 0o600

