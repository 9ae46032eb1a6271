"""Processes the benchmarks start: a real hub, and what they measure about a pid."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import grpc
import psutil

REPO_ROOT = Path(__file__).resolve().parents[1]
_READY = re.compile(r"^gamenode hub: REST API on (http://\S+) .*gRPC on (\S+?),")


@dataclass
class Hub:
    proc: subprocess.Popen[str]
    url: str
    grpc: str
    headers: dict[str, str] = field(default_factory=dict)
    """REST headers with the hub's local admin API token (`DATA_DIR/admin.token`)."""
    data_dir: Path | None = None

    @property
    def ca_file(self) -> Path:
        """The hub's CA (`DATA_DIR/ca.pem`): what its agents pin with `--ca`."""
        assert self.data_dir is not None
        return self.data_dir / "ca.pem"

    @property
    def grpc_metadata(self) -> tuple[tuple[str, str], ...]:
        """gRPC metadata with the hub's local admin API token (HubService calls over TCP need one)."""
        return (("authorization", self.headers["Authorization"]),)

    def console_channel(self) -> grpc.aio.Channel:
        """A channel to the hub's gRPC port as a console opens it: TLS with the hub's CA pinned."""
        return grpc.aio.secure_channel(self.grpc, grpc.ssl_channel_credentials(self.ca_file.read_bytes()))

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GAMENODE_")}
    env["GAMENODE_LOG_LEVEL"] = "WARNING"
    env["PYTHONPATH"] = str(REPO_ROOT)
    env.update(extra)
    return env


def start_hub(data_dir: Path, timeout: float = 60.0, args: Sequence[str] = ()) -> Hub:
    """A hub on `data_dir` (`args`: more flags, e.g. `--insecure`), once it announced its addresses."""
    cmd = [sys.executable, "-m", "console.cli", "hub", "--data-dir", str(data_dir),
           "--http-listen", "127.0.0.1:0", "--grpc-listen", "127.0.0.1:0", *args]
    proc = subprocess.Popen(cmd, cwd=REPO_ROOT, env=clean_env(), stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            raise RuntimeError(f"hub exited with {proc.wait()} before it was ready")
        m = _READY.match(line)
        if m:
            token = (data_dir / "admin.token").read_text().strip()
            return Hub(proc, m.group(1), m.group(2), {"Authorization": f"Bearer {token}"}, data_dir)
    proc.kill()
    raise RuntimeError("hub did not announce its addresses in time")


@dataclass
class Usage:
    rss_mb: float
    cpu_percent: float
    """Of one core, averaged over the window."""


def measure(pid: int, seconds: float) -> Usage:
    """RSS at the end and CPU over `seconds` (children included) of a running process."""
    proc = psutil.Process(pid)

    def cpu_seconds() -> float:
        total = 0.0
        for p in [proc, *proc.children(recursive=True)]:
            try:
                t = p.cpu_times()
                total += t.user + t.system
            except psutil.NoSuchProcess:
                pass
        return total

    c0, t0 = cpu_seconds(), time.monotonic()
    time.sleep(seconds)
    c1, t1 = cpu_seconds(), time.monotonic()
    rss = sum(p.memory_info().rss for p in [proc, *proc.children(recursive=True)])
    return Usage(rss / 2**20, (c1 - c0) / (t1 - t0) * 100)
