"""Helpers the actions share: calling back into the event loop from worker threads, names, messages."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Awaitable, Callable
from typing import TypeVar

from agent.pipeline.context import StepContext

__all__ = ["LoopCallbacks", "in_thread", "short_id"]

T = TypeVar("T")


class LoopCallbacks:
    """`ctx.progress` / `ctx.log` callable from worker threads: each call hops onto the event loop.

    Log lines are redacted (`ctx.secrets`) on the way.
    """

    def __init__(self, ctx: StepContext) -> None:
        self._ctx = ctx
        self._loop = asyncio.get_running_loop()

    def progress(self, percent: float, message: str) -> None:
        self._soon(self._ctx.progress, percent, self._ctx.redact(message))

    def log(self, text: str, level: str = "info", stream: str = "") -> None:
        self._soon(self._ctx.log, self._ctx.redact(text), level, stream)

    def _soon(self, fn: Callable[..., None], *args: object) -> None:
        with contextlib.suppress(RuntimeError):  # the loop is gone: the run is over anyway
            self._loop.call_soon_threadsafe(fn, *args)


async def in_thread(fn: Callable[[threading.Event], T]) -> T:
    """Run the blocking `fn(cancel)` in a thread; on cancellation set `cancel`, wait for it, re-raise.

    `fn` must check `cancel` often (between stream chunks). The thread is given a
    few seconds to notice; past that it is left to finish on its own.
    """
    cancel = threading.Event()
    task: Awaitable[T] = asyncio.ensure_future(asyncio.to_thread(fn, cancel))
    try:
        return await asyncio.shield(task)
    except asyncio.CancelledError:
        cancel.set()
        with contextlib.suppress(BaseException):
            await asyncio.wait_for(asyncio.shield(task), 5.0)
        raise


def short_id(container_id: str) -> str:
    return container_id[:12]
