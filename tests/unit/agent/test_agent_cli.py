"""`agent.cli.main` and `agent.settings`: flags, environment, @FILE tokens, the identity flags, one-line errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from agent.cli import main
from agent.errors import ConfigError
from agent.settings import AgentSettings, parse_hub, read_token


@pytest.fixture(autouse=True)
def _no_agent_env(monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    for name in list(os.environ):
        if name.startswith("GAMENODE_"):
            monkeypatch.delenv(name)


def _error(capsys: pytest.CaptureFixture[str]) -> str:
    out, err = capsys.readouterr()
    assert out == ""
    assert err.startswith("gamenode agent: error: ")
    assert err.count("\n") == 1
    assert "Traceback" not in err
    return err


def test_token_from_file_is_stripped(tmp_path: Path) -> None:
    token_file = tmp_path / "token"
    token_file.write_text("  s3cret-token\n")
    settings = AgentSettings.load(env={}, hub="hub:7070", node_id="n1", token=f"@{token_file}", state_dir=tmp_path,
                                  insecure=True)
    assert settings.token == "s3cret-token"
    assert settings.token_file == token_file
    assert "s3cret" not in repr(settings)


def test_token_from_the_environment(tmp_path: Path) -> None:
    token_file = tmp_path / "token"
    token_file.write_text("from-env-file")
    env = {"GAMENODE_AGENT_TOKEN": f"@{token_file}", "GAMENODE_AGENT_HUB": "h:1", "GAMENODE_AGENT_NODE_ID": "n",
           "GAMENODE_AGENT_HEARTBEAT_INTERVAL": "2.5", "GAMENODE_AGENT_ONCE": "true",
           "GAMENODE_AGENT_STATE_DIR": str(tmp_path), "GAMENODE_AGENT_CA_FILE": str(token_file)}
    settings = AgentSettings.load(env=env, node_id="flag-wins")
    assert (settings.token, settings.hub, settings.node_id) == ("from-env-file", "h:1", "flag-wins")
    assert settings.heartbeat_interval == 2.5
    assert settings.once is True
    assert (settings.ca_file, settings.insecure) == (token_file, False)
    insecure = AgentSettings.load(env={**env, "GAMENODE_AGENT_INSECURE": "1", "GAMENODE_AGENT_CA_FILE": ""})
    assert (insecure.ca_file, insecure.insecure) == (None, True)


def test_missing_token_file_is_a_clear_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    missing = tmp_path / "nope"
    code = main(["--hub", "127.0.0.1:7070", "--node-id", "n1", "--token", f"@{missing}", "--state-dir", str(tmp_path)])
    assert code == 1
    assert f"token file {missing} not found" in _error(capsys)


def test_empty_token_file_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "t").write_text("\n")
    with pytest.raises(ConfigError, match="is empty"):
        read_token(f"@{tmp_path / 't'}")


@pytest.mark.parametrize("hub", ["nonsense", "127.0.0.1", "127.0.0.1:99999", "127.0.0.1:0", ":7070", "h:port"])
def test_bad_hub_exits_1(tmp_path: Path, capsys: pytest.CaptureFixture[str], hub: str) -> None:
    code = main(["--hub", hub, "--node-id", "n1", "--token", "t", "--state-dir", str(tmp_path)])
    assert code == 1
    assert "HOST:PORT" in _error(capsys)


@pytest.mark.parametrize(("hub", "target"), [("hub.lan:7070", "hub.lan:7070"), ("[::1]:7070", "[::1]:7070")])
def test_hub_targets(tmp_path: Path, hub: str, target: str) -> None:
    settings = AgentSettings(hub=hub, node_id="n", token="t", state_dir=tmp_path, insecure=True)
    assert settings.target == target
    assert parse_hub(hub)[1] == 7070


def test_missing_flag_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--hub", "127.0.0.1:7070", "--token", "t", "--state-dir", str(tmp_path)]) == 1
    assert "--node-id is required" in _error(capsys)


def test_unknown_flag_is_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--bogus"]) == 1
    assert "unrecognized arguments: --bogus" in _error(capsys)


def test_bad_log_level(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["--hub", "127.0.0.1:7070", "--node-id", "n", "--token", "t", "--state-dir", str(tmp_path),
            "--insecure", "--log-level", "chatty"]
    assert main(argv) == 1
    assert "--log-level" in _error(capsys)


def test_debug_shows_the_traceback(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GAMENODE_DEBUG", "1")
    assert main(["--hub", "x", "--node-id", "n", "--token", "t", "--state-dir", str(tmp_path)]) == 1
    assert "Traceback" in capsys.readouterr().err


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["--version"])
    assert exit_info.value.code == 0
    assert capsys.readouterr().out.strip() == "gamenode agent 0.1.0"


# --- identity flags -------------------------------------------------------------------------


def test_a_node_without_a_certificate_needs_a_join_token(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["--hub", "127.0.0.1:7070", "--node-id", "n1", "--state-dir", str(tmp_path), "--insecure"])
    assert code == 1
    error = _error(capsys)
    assert "--token is required" in error and "node n1 has no certificate" in error
    assert "/api/v1/nodes/n1/token" in error


def test_a_node_with_a_certificate_needs_no_token_nor_ca(tmp_path: Path) -> None:
    identity = tmp_path / "identity"
    identity.mkdir()
    (identity / "cert.pem").write_text("(a certificate)")
    (identity / "ca.pem").write_text("(the pinned CA)")
    settings = AgentSettings.load(env={}, hub="hub:7070", node_id="n1", state_dir=tmp_path)
    assert (settings.token, settings.token_file, settings.ca_file, settings.insecure) == ("", None, None, False)


def test_joining_a_tls_hub_needs_its_ca(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["--hub", "127.0.0.1:7070", "--node-id", "n1", "--token", "t", "--state-dir", str(tmp_path)])
    assert code == 1
    error = _error(capsys)
    assert "--ca FILE is required" in error and "DATA_DIR/ca.pem" in error and "--insecure" in error


def test_a_missing_ca_file_is_named(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    missing = tmp_path / "nope.pem"
    code = main(["--hub", "127.0.0.1:7070", "--node-id", "n1", "--token", "t", "--state-dir", str(tmp_path),
                 "--ca", str(missing)])
    assert code == 1
    assert f"--ca: {missing} is not a file" in _error(capsys)


def test_help_names_the_identity_flags(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["--help"])
    out = capsys.readouterr().out
    assert "--ca FILE" in out and "--insecure" in out and "join token" in out
