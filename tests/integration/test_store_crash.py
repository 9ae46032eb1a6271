"""Crash recovery: a writer killed with SIGKILL at random points, many times.

After every kill the data directory must load (nothing corrupt), hold every
acknowledged write, and differ from the acknowledged state at most by the one
operation that was in flight.
"""

from __future__ import annotations

import os
import random
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from console.store import Stores

WRITER = Path(__file__).with_name("crash_writer.py")
ROUNDS = 20

Expected = dict[str, str]  # node id → seq label


def _apply(state: Expected, op: str, id: str, seq: str) -> Expected:
    state = dict(state)
    if op == "delete":
        state.pop(id, None)
    else:
        state[id] = seq
    return state


def _run_and_kill(data_dir: Path, seed: int, delay: float) -> tuple[list[list[str]], list[str] | None]:
    """Start a writer, kill -9 it after `delay` s of writing; return acked ops and the in-flight one."""
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[2])}
    # unbuffered: communicate() reads the pipe itself, so nothing may sit in a reader's buffer
    proc = subprocess.Popen([sys.executable, str(WRITER), str(data_dir), str(seed)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, bufsize=0)
    assert proc.stdout is not None
    ready = proc.stdout.readline()
    assert ready == b"READY\n", proc.stderr.read().decode() if proc.stderr else ready
    deadline = time.monotonic() + delay
    while time.monotonic() < deadline:
        select.select([], [], [], max(deadline - time.monotonic(), 0))
    proc.send_signal(signal.SIGKILL)
    out, err = proc.communicate()
    assert proc.returncode == -signal.SIGKILL, err.decode()
    acked, in_flight = [], None
    for line in out.decode().splitlines():
        parts = line.split()
        if len(parts) != 4:  # the kill may cut the last line short
            continue
        if parts[0] == "BEGIN":
            in_flight = parts[1:]
        elif parts[0] == "ACK" and parts[1:] == in_flight:
            acked.append(parts[1:])
            in_flight = None
    return acked, in_flight


def _on_disk(data_dir: Path) -> Expected:
    stores = Stores.open(data_dir)  # raises on any corrupt record
    try:
        return {n.id: n.labels["seq"] for n in stores.nodes.list()}
    finally:
        stores.close()


@pytest.mark.slow
def test_kill_9_midway_loses_no_acknowledged_write_and_corrupts_nothing(tmp_path: Path) -> None:
    rng = random.Random(20261129)
    expected: Expected = {}
    acked_total = 0
    for round in range(ROUNDS):
        acked, in_flight = _run_and_kill(tmp_path, rng.randrange(1 << 30), rng.uniform(0.05, 0.4))
        for op, id, seq in acked:
            expected = _apply(expected, op, id, seq)
        acked_total += len(acked)
        actual = _on_disk(tmp_path)
        allowed = [expected] + ([_apply(expected, *in_flight)] if in_flight else [])
        assert actual in allowed, f"round {round}: in flight {in_flight}"
        expected = actual  # the in-flight op either landed whole or not at all
        leftovers = [p.name for p in (tmp_path / "nodes").iterdir() if ".tmp-" in p.name]
        assert leftovers == [], "temp files must be cleaned up by the load"
    assert acked_total > ROUNDS, "the writer should get many writes done before each kill"
