"""The embedded hub: `gamenode hub` as a child process on a data dir, reached over a unix socket.

The console talks to it exactly as to a remote hub (one code path), and the
UI's event loop never waits on hub work. The hub serves gRPC on
`unix:DATA_DIR/hub.sock` (mode 0600; a short path under the temp dir when the
data dir's is too long for a socket) and REST on a free 127.0.0.1 port; its
output goes to `DATA_DIR/hub.log`, never to the terminal the console draws on.

    with EmbeddedHub(data_dir) as hub:       # starts it, waits for its ready line
        run_the_console(lambda: HubClient(hub.target))
    # stopped: SIGTERM, then SIGKILL after `stop_timeout`

`command` runs another `gamenode` command in the same way (`gamenode demo
--headless` for the demo: seeded fleet and local agents); `grpc_listen`
adds TCP addresses before the socket (agents dial the first one).
"""

from __future__ import annotations

import contextlib
import os
import queue
import shutil
import subprocess
import sys
import tempfile
import threading
from collections import deque
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import IO

from console.errors import Unavailable

__all__ = ["EmbeddedHub", "EmbeddedHubError"]

READY_TIMEOUT = 60.0
"""Seconds the hub has to announce its addresses (opening a large data dir takes a while)."""
STOP_TIMEOUT = 10.0
"""Seconds the hub has to exit after SIGTERM before it is killed."""
SOCKET_NAME = "hub.sock"
LOG_NAME = "hub.log"
_UNIX_PATH_MAX = 107


class EmbeddedHubError(Unavailable):
    """The embedded hub did not start; the message ends with the last lines it wrote."""


class EmbeddedHub:
    """A `gamenode` hub child process on `data_dir`, for one console."""

    def __init__(
        self, data_dir: Path, *, command: Sequence[str] = ("hub",), grpc_listen: Sequence[str] = (),
        http_listen: str = "127.0.0.1:0", ready_timeout: float = READY_TIMEOUT, stop_timeout: float = STOP_TIMEOUT,
    ) -> None:
        self.data_dir = Path(data_dir).resolve()
        self.command = list(command)
        self.grpc_listen = list(grpc_listen)
        self.http_listen = http_listen
        self.ready_timeout = ready_timeout
        self.stop_timeout = stop_timeout
        self.socket = self.data_dir / SOCKET_NAME
        self.log_path = self.data_dir / LOG_NAME
        self.lines: deque[str] = deque(maxlen=200)
        """The hub's latest stdout lines (its ready line and, for the demo, its addresses)."""
        self._tempdir: Path | None = None
        self._proc: subprocess.Popen[str] | None = None
        self._reader: threading.Thread | None = None

    @property
    def target(self) -> str:
        """The gRPC target consoles dial: `unix:PATH`."""
        return f"unix:{self.socket}"

    def argv(self) -> list[str]:
        """The child's command line."""
        listen = ",".join([*self.grpc_listen, self.target])
        return [sys.executable, "-m", "console.cli", *self.command, "--data-dir", str(self.data_dir),
                "--grpc-listen", listen, "--http-listen", self.http_listen]

    # --- start and stop -------------------------------------------------------------

    def start(self) -> str:
        """Start the hub and wait until it serves the socket; the target. EmbeddedHubError when it cannot."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        if len(os.fsencode(self.socket)) > _UNIX_PATH_MAX:
            self._tempdir = Path(tempfile.mkdtemp(prefix="gamenode-"))
            self.socket = self._tempdir / SOCKET_NAME
        with self.log_path.open("a", encoding="utf-8") as log:
            self._proc = subprocess.Popen(
                self.argv(), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=log, text=True, bufsize=1,
            )
        assert self._proc.stdout is not None
        ready: queue.Queue[bool] = queue.Queue()
        self._reader = threading.Thread(target=self._read, args=(self._proc.stdout, ready), daemon=True,
                                        name="embedded-hub-output")
        self._reader.start()
        try:
            ok = ready.get(timeout=self.ready_timeout)
        except queue.Empty:
            ok = False
        if not ok:
            message = self._failure()
            self.stop()
            raise EmbeddedHubError(message)
        return self.target

    def stop(self) -> None:
        """SIGTERM, wait up to `stop_timeout`, then SIGKILL; safe to call twice."""
        proc, self._proc = self._proc, None
        if proc is not None:
            _terminate(proc, self.stop_timeout)
        if self._reader is not None:
            self._reader.join(self.stop_timeout)
            self._reader = None
        if proc is not None and proc.stdout is not None:
            proc.stdout.close()
        if self._tempdir is not None:
            shutil.rmtree(self._tempdir, ignore_errors=True)
            self._tempdir = None

    @property
    def returncode(self) -> int | None:
        """None while it runs (or before it started)."""
        return None if self._proc is None else self._proc.poll()

    def __enter__(self) -> EmbeddedHub:
        self.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    # --- internals ------------------------------------------------------------------

    def _read(self, stdout: IO[str], ready: queue.Queue[bool]) -> None:
        """Keep the hub's stdout (to `lines` and the log) and say when a line names the socket."""
        announced = False
        with self.log_path.open("a", encoding="utf-8") as log, contextlib.suppress(ValueError, OSError):
            for line in stdout:
                self.lines.append(line.rstrip("\n"))
                log.write(line)
                log.flush()
                if not announced and self.target in line:
                    announced = True
                    ready.put(True)
        if not announced:
            ready.put(False)

    def _failure(self) -> str:
        code = None
        if self._proc is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                code = self._proc.wait(1)  # it closed its output: it is exiting
        why = "did not announce its socket in time" if code is None else f"exited with status {code}"
        tail = _tail(self.log_path)
        return f"the embedded hub ({' '.join(self.command)} on {self.data_dir}) {why}" + (
            f":\n{tail}" if tail else f"; see {self.log_path}")


def _terminate(proc: subprocess.Popen[str], timeout: float) -> None:
    if proc.poll() is None:
        proc.terminate()
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def _tail(path: Path, lines: int = 8) -> str:
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""
    return "\n".join(text.rstrip().splitlines()[-lines:])
