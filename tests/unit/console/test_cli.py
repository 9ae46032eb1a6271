"""`console.cli.main`: errors become one line on stderr and an exit code."""

from __future__ import annotations

from pathlib import Path

import pytest

from console.cli import main
from console.hub.app import VERSION


@pytest.fixture(autouse=True)
def _no_gamenode_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("GAMENODE_CONFIG", "GAMENODE_DATA_DIR", "GAMENODE_HTTP_LISTEN", "GAMENODE_DEBUG"):
        monkeypatch.delenv(name, raising=False)


@pytest.mark.parametrize("listen", ["nonsense", "127.0.0.1", "127.0.0.1:99999", "127.0.0.1:http", ":8080"])
def test_bad_http_listen_exits_1(tmp_path: Path, capsys: pytest.CaptureFixture[str], listen: str) -> None:
    code = main(["hub", "--data-dir", str(tmp_path / "data"), "--http-listen", listen])
    assert code == 1
    out, err = capsys.readouterr()
    assert err.startswith("gamenode: error: ")
    assert "HOST:PORT" in err
    assert "Traceback" not in err
    assert out == ""


def test_unbindable_address_exits_1(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["hub", "--data-dir", str(tmp_path / "data"), "--http-listen", "192.0.2.1:8080"])
    assert code == 1
    err = capsys.readouterr().err
    assert err.startswith("gamenode: error: cannot listen on 192.0.2.1:8080")


def test_bad_listen_from_the_environment_exits_1(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GAMENODE_HTTP_LISTEN", "nowhere")
    assert main(["hub", "--data-dir", str(tmp_path / "data")]) == 1
    err = capsys.readouterr().err
    assert err.startswith("gamenode: error: ")
    assert "http_listen" in err


def test_data_dir_in_use_exits_1(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from console.store import Stores

    stores = Stores.open(tmp_path / "data")
    try:
        assert main(["hub", "--data-dir", str(tmp_path / "data"), "--http-listen", "127.0.0.1:0"]) == 1
    finally:
        stores.close()
    err = capsys.readouterr().err
    assert err.startswith("gamenode: error: data directory")
    assert "in use" in err


def test_debug_shows_the_traceback(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GAMENODE_DEBUG", "1")
    assert main(["hub", "--data-dir", str(tmp_path / "data"), "--http-listen", "nonsense"]) == 1
    err = capsys.readouterr().err
    assert "Traceback" in err
    assert "gamenode: error: " in err


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["version"]) == 0
    assert capsys.readouterr().out == f"gamenode {VERSION}\n"


@pytest.mark.parametrize("argv", [["frobnicate"], [], ["hub", "--no-such-flag"]])
def test_usage_errors_exit_2(capsys: pytest.CaptureFixture[str], argv: list[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "usage: gamenode" in err
