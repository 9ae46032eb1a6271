"""`image.pull`: pull a game image, unless the local copy already matches the registry's.

Progress is in bytes, summed over the layers from the pull stream; each new
status line ("<layer>: Pull complete") goes to the run's log.
"""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

from agent.errors import StepFailed
from agent.pipeline.actions._util import LoopCallbacks, in_thread
from agent.pipeline.context import StepContext
from agent.pipeline.inputs import ImagePull
from agent.runtime.docker import PullResult, PullTally

__all__ = ["normalize_ref", "pull"]

_LOG_EVERY = 0.05
"""Seconds between two logged status lines at most (a pull of many layers says a lot)."""


def normalize_ref(image: str) -> str:
    """`repo` → `repo:latest`; `repo:tag` and `repo@sha256:...` as they are."""
    if "@" in image:
        return image
    last = image.rsplit("/", 1)[-1]
    return image if ":" in last else f"{image}:latest"


async def pull(ctx: StepContext, inputs: ImagePull) -> dict[str, Any]:
    """Pull `inputs.image` (with its credentials): {image, digest, pulled, bytes}."""
    ref = normalize_ref(inputs.image)
    auth = {"username": inputs.username, "password": inputs.password} if inputs.username or inputs.password else None
    if not inputs.always:
        digest = await _up_to_date(ctx, ref, auth)
        if digest is not None:
            ctx.progress(100.0, f"{ref} is already here (digest matches the registry)")
            ctx.log(f"{ref} is up to date ({digest or 'no digest'}); not pulled")
            return {"image": ref, "digest": digest, "pulled": False, "bytes": 0}
    ctx.progress(0.0, f"pulling {ref}")
    ctx.log(f"pulling {ref}")
    reporter = _Reporter(ctx, ref)
    result: PullResult = await in_thread(lambda cancel: ctx.runtime.pull(ref, auth, reporter, cancel))
    ctx.progress(100.0, f"pulled {ref} ({reporter.tally_text})")
    ctx.log(f"pulled {ref}: {result.digest or 'no digest'}, {result.bytes} bytes downloaded")
    return {"image": result.image, "digest": result.digest, "pulled": True, "bytes": result.bytes}


async def _up_to_date(ctx: StepContext, ref: str, auth: dict[str, str] | None) -> str | None:
    """The local digest when the local image is the registry's one (or cannot be checked); None to pull."""
    local = await asyncio.to_thread(ctx.runtime.local_digests, ref)
    if local is None:
        return None
    if "@" in ref:
        return ref.rsplit("@", 1)[1]
    try:
        remote = await asyncio.to_thread(ctx.runtime.registry_digest, ref, auth)
    except StepFailed as exc:
        ctx.log(f"cannot ask the registry about {ref} ({exc.message}); using the local image", "warning")
        return local[0] if local else ""
    if remote and remote in local:
        return remote
    ctx.log(f"{ref}: the registry has {remote or 'another image'}; pulling")
    return None


class _Reporter:
    """The pull thread's callback: progress as percent + "X MB / Y MB", distinct status lines to the log."""

    def __init__(self, ctx: StepContext, ref: str) -> None:
        self._out = LoopCallbacks(ctx)
        self._ref = ref
        self._lock = threading.Lock()
        self._last_log = 0.0
        self.tally_text = ""

    def __call__(self, tally: PullTally, line: str | None) -> None:
        self.tally_text = tally.describe()
        self._out.progress(min(tally.percent, 99.0), f"pulling {self._ref}: {self.tally_text}")
        if line is not None:
            self._log(line)

    def _log(self, line: str) -> None:
        now = time.monotonic()
        with self._lock:
            if now - self._last_log < _LOG_EVERY and not line.endswith(("complete", "exists")):
                return
            self._last_log = now
        self._out.log(line, stream="stdout")
