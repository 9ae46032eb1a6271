"""Hand-broken YAML stops a real `gamenode hub` process at start, naming the file and the line.

`test_rest_process.py` covers a node file; here every other store of the data dir (the security
ones included) and the settings file named by GAMENODE_CONFIG. The hub exits non-zero with one
`gamenode: error: FILE:LINE: invalid YAML: ...` line, no traceback, and leaves the file as it was.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
BROKEN = "id: x1\nname: [not closed\n"
"""A flow sequence left open on line 2: PyYAML notices at the end of the file (line 3)."""

RunHub = Callable[[Path], "subprocess.CompletedProcess[str]"]


def assert_refused_at(result: subprocess.CompletedProcess[str], path: Path) -> None:
    assert result.returncode != 0
    assert f"gamenode: error: {path}:3: invalid YAML: " in result.stderr, result.stderr
    assert "at line 2" in result.stderr  # where the open `[` began
    assert "Traceback" not in result.stderr
    assert "REST API on" not in result.stdout
    assert path.read_text() == BROKEN  # left as it was


@pytest.mark.parametrize("store", ["api_tokens", "credentials", "instances", "gamecards", "platforms", "runs",
                                   "rollouts"])
def test_a_broken_file_in_any_store_stops_the_hub_with_its_line(tmp_path: Path, run_hub: RunHub, store: str) -> None:
    folder = tmp_path / "data" / store
    folder.mkdir(parents=True)
    broken = folder / "x1.yaml"
    broken.write_text(BROKEN)

    assert_refused_at(run_hub(tmp_path / "data"), broken)


def test_a_broken_settings_file_stops_the_hub_with_its_line(tmp_path: Path) -> None:
    config = tmp_path / "hub.yaml"
    config.write_text(BROKEN)
    env = {k: v for k, v in os.environ.items() if not k.startswith("GAMENODE_")}
    env["GAMENODE_CONFIG"] = str(config)
    result = subprocess.run(
        [sys.executable, "-m", "console.cli", "hub", "--data-dir", str(tmp_path / "data"),
         "--http-listen", "127.0.0.1:0", "--grpc-listen", "127.0.0.1:0"],
        cwd=REPO_ROOT, env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=30,
    )
    assert_refused_at(result, config)
