"""`container.wait`: until the container is healthy (TCP connect, HTTP status, a log line), or it stops.

Every probe given must pass; with none the container only has to be running.
Meanwhile the container's output goes to the run's log (a thread follows its
logs; the log-line probe reads the same lines). The step's timeout bounds the
wait: cancellation stops the log reader and propagates. A container that
stops while waited for fails the step at once, with its exit code and last
output.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import threading
import time
import urllib.error
import urllib.request
from typing import Any

from agent.errors import StepFailed
from agent.pipeline.actions._util import LoopCallbacks
from agent.pipeline.context import StepContext
from agent.pipeline.inputs import ContainerWait
from agent.runtime.docker import stop_stream

__all__ = ["tcp_healthy", "wait"]

_EOF_GRACE = 0.2
"""Seconds a fresh TCP connection must stay open: Docker's port proxy accepts and then drops
connections while nothing listens in the container."""
_HTTP_TIMEOUT = 2.0
FIRST_DELAY = 0.01
"""Seconds before the second probe; the delay doubles up to the step's `interval`."""
_LIVE = frozenset({"running", "restarting", "created"})


async def wait(ctx: StepContext, inputs: ContainerWait) -> dict[str, Any]:
    """Wait until healthy: {healthy_after_s}."""
    name = inputs.container or ctx.container_name
    pattern = _compile(inputs.log_line)
    started = time.monotonic()
    follower = _LogFollower(ctx, name, pattern)
    await follower.start()
    try:
        await _until_healthy(ctx, inputs, name, follower)
    finally:
        await follower.close()
    elapsed = time.monotonic() - started
    ctx.progress(100.0, f"{name} is healthy")
    ctx.log(f"{name} is healthy after {elapsed:.2f}s")
    return {"healthy_after_s": round(elapsed, 3)}


def _compile(expression: str) -> re.Pattern[str] | None:
    if not expression:
        return None
    try:
        return re.compile(expression)
    except re.error as exc:
        raise StepFailed(f"log_line {expression!r} is not a valid regular expression: {exc}") from exc


async def _until_healthy(ctx: StepContext, inputs: ContainerWait, name: str, follower: _LogFollower) -> None:
    """Probe until healthy; between probes, check the container still lives (backing off to `interval`)."""
    what = _describe(inputs)
    ctx.progress(0.0, f"waiting for {name}: {what}")
    delay = min(FIRST_DELAY, inputs.interval)
    while True:
        info = await asyncio.to_thread(ctx.runtime.inspect, name)
        if info is None:
            raise StepFailed(f"container {name} is gone while waiting for it to become healthy")
        if info.state not in _LIVE:
            reason = await asyncio.to_thread(ctx.runtime.exit_reason, name)
            raise StepFailed(f"container {name} stopped before it became healthy: {reason}")
        if info.state == "running" and await _probes_pass(inputs, follower):
            return
        await asyncio.sleep(delay)
        delay = min(delay * 2, inputs.interval)


async def _probes_pass(inputs: ContainerWait, follower: _LogFollower) -> bool:
    if inputs.log_line and not follower.matched.is_set():
        return False
    if inputs.tcp_port and not await tcp_healthy(inputs.host, inputs.tcp_port):
        return False
    return not inputs.http_url or await asyncio.to_thread(_http_healthy, inputs.http_url, inputs.http_status)


def _describe(inputs: ContainerWait) -> str:
    parts = []
    if inputs.tcp_port:
        parts.append(f"TCP {inputs.host}:{inputs.tcp_port}")
    if inputs.http_url:
        parts.append(f"HTTP {inputs.http_status} from {inputs.http_url}")
    if inputs.log_line:
        parts.append(f"a log line matching {inputs.log_line!r}")
    return ", ".join(parts) or "running"


async def tcp_healthy(host: str, port: int) -> bool:
    """A connection to `host:port` opens and is not dropped at once (which Docker's proxy does when nothing listens)."""
    try:
        reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), _HTTP_TIMEOUT)
    except (OSError, TimeoutError):
        return False
    try:
        data = await asyncio.wait_for(reader.read(1), _EOF_GRACE)
    except TimeoutError:
        return True  # still open: something listens
    except OSError:
        return False
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()
    return bool(data)  # b"": dropped at once


def _http_healthy(url: str, status: int) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=_HTTP_TIMEOUT) as response:
            code = int(response.status)
    except urllib.error.HTTPError as exc:
        code = exc.code
        exc.close()
    except (urllib.error.URLError, OSError, ValueError):
        return False
    return code == status


class _LogFollower:
    """Follows the container's output in a thread: each line to the run's log, and `matched` set on the pattern."""

    def __init__(self, ctx: StepContext, name: str, pattern: re.Pattern[str] | None) -> None:
        self._ctx = ctx
        self._name = name
        self._pattern = pattern
        self._stop = threading.Event()
        self.matched = threading.Event()
        self._task: asyncio.Future[None] | None = None

    async def start(self) -> None:
        out = LoopCallbacks(self._ctx)
        self._task = asyncio.ensure_future(asyncio.to_thread(self._follow, out))

    async def close(self) -> None:
        stop_stream(self._stop)
        if self._task is not None:
            with contextlib.suppress(Exception, asyncio.CancelledError):
                await asyncio.wait_for(asyncio.shield(self._task), 5.0)

    def _follow(self, out: LoopCallbacks) -> None:
        try:
            for stream, line in self._ctx.runtime.stream_logs(self._name, None, self._stop):
                out.log(line, stream=stream)
                if self._pattern is not None and self._pattern.search(line):
                    self.matched.set()
        except StepFailed as exc:
            out.log(f"cannot follow the output of {self._name}: {exc.message}", "warning")
