"""Real hub processes for the integration tests.

`hub` is one hub for the whole session (tests use ids of their own, so they
share it); `start_hub` starts more on a data directory of the test's choosing
and kills whatever is still running when the test ends; `run_hub` runs one
that is expected to exit on its own (a start-up failure).

Helpers for the REST tests (`uid`, `create_node`, `assert_error`, ...) are in
`rest_helpers.py`.
"""

from __future__ import annotations

import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

READY_TIMEOUT = 30.0
"""Seconds a hub may take from exec to its `REST API on ...` line."""
STOP_TIMEOUT = 10.0
"""Seconds a hub may take to exit after SIGTERM."""

_READY = re.compile(r"^gamenode hub: REST API on (http://\S+) .*\bgRPC on (\S+?), ")
REPO_ROOT = Path(__file__).resolve().parents[2]


def admin_headers(data_dir: Path) -> dict[str, str]:
    """REST headers with the hub's local admin API token (`DATA_DIR/admin.token`, written at its first start)."""
    return {"Authorization": f"Bearer {(data_dir / 'admin.token').read_text().strip()}"}


def hub_command(data_dir: Path, listen: str = "127.0.0.1:0", grpc_listen: str = "127.0.0.1:0") -> list[str]:
    return [sys.executable, "-m", "console.cli", "hub", "--data-dir", str(data_dir), "--http-listen", listen,
            "--grpc-listen", grpc_listen]


def hub_env() -> dict[str, str]:
    """The test's environment without any GAMENODE_ setting that could steer the hub."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("GAMENODE_")}
    env["GAMENODE_LOG_LEVEL"] = "WARNING"
    return env


class HubProcess:
    """A `gamenode hub` child process, the URL and the gRPC address (`HOST:PORT`) it announced."""

    def __init__(self, data_dir: Path, stderr_path: Path) -> None:
        self.data_dir = data_dir
        self.stderr_path = stderr_path
        self._stderr = stderr_path.open("wb")
        self.proc = subprocess.Popen(
            hub_command(data_dir),
            cwd=REPO_ROOT,
            env=hub_env(),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=self._stderr,
            text=True,
        )
        self.stdout: list[str] = []
        self._lines: queue.Queue[str | None] = queue.Queue()
        self._drainer = threading.Thread(target=self._drain, daemon=True)
        self._drainer.start()
        self.url, self.grpc_address = self._wait_ready()

    @property
    def pid(self) -> int:
        return self.proc.pid

    def client(self) -> httpx.Client:
        """A REST client as the hub's local admin (`DATA_DIR/admin.token`)."""
        return httpx.Client(base_url=self.url, timeout=10.0, headers=admin_headers(self.data_dir))

    def stderr(self) -> str:
        return self.stderr_path.read_text(errors="replace")

    def stop(self) -> int:
        """SIGTERM, wait, and the exit code (pytest.fail when it does not exit in time)."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            code = self.proc.wait(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            self.kill()
            pytest.fail(
                f"hub (pid {self.pid}) still running {STOP_TIMEOUT:g}s after SIGTERM; "
                f"stderr:\n{self.stderr()}"
            )
        self._close()
        return code

    def stop_cleanly(self) -> None:
        code = self.stop()
        assert code == 0, f"hub exited with {code} after SIGTERM; stderr:\n{self.stderr()}"

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self._close()

    def _close(self) -> None:
        self._drainer.join(timeout=STOP_TIMEOUT)  # stdout is closed once read to the end
        self._stderr.close()

    def _drain(self) -> None:
        assert self.proc.stdout is not None
        with self.proc.stdout:
            for line in self.proc.stdout:
                self.stdout.append(line)
                self._lines.put(line)
        self._lines.put(None)

    def _wait_ready(self) -> tuple[str, str]:
        deadline = time.monotonic() + READY_TIMEOUT
        problem = f"no 'REST API on' line within {READY_TIMEOUT:g}s"
        while (left := deadline - time.monotonic()) > 0:
            try:
                line = self._lines.get(timeout=left)
            except queue.Empty:
                break
            if line is None:
                problem = "it closed its stdout before announcing its URL"
                break
            found = _READY.match(line)
            if found:
                return found.group(1), found.group(2)
        self.kill()
        pytest.fail(
            f"hub on {self.data_dir} did not start: {problem} (exit code {self.proc.returncode})\n"
            f"stdout:\n{''.join(self.stdout)}\nstderr:\n{self.stderr()}",
            pytrace=False,
        )


@pytest.fixture(scope="session")
def hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HubProcess]:
    """One hub shared by the session; it must exit 0 on SIGTERM at the end."""
    root = tmp_path_factory.mktemp("hub")
    process = HubProcess(root / "data", root / "stderr.log")
    yield process
    process.stop_cleanly()


@pytest.fixture(scope="session")
def api(hub: HubProcess) -> Iterator[httpx.Client]:
    with hub.client() as client:
        yield client


@pytest.fixture
def start_hub(tmp_path: Path) -> Iterator[Callable[[Path], HubProcess]]:
    """Start a hub on `data_dir`; any still running when the test ends is killed."""
    started: list[HubProcess] = []

    def start(data_dir: Path) -> HubProcess:
        process = HubProcess(data_dir, tmp_path / f"hub-{len(started)}.stderr")
        started.append(process)
        return process

    yield start
    for process in started:
        process.kill()


@pytest.fixture
def run_hub() -> Callable[[Path], subprocess.CompletedProcess[str]]:
    """Run a hub on `data_dir` until it exits by itself (killed after READY_TIMEOUT)."""

    def run(data_dir: Path) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            hub_command(data_dir),
            cwd=REPO_ROOT,
            env=hub_env(),
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=READY_TIMEOUT,
        )

    return run
