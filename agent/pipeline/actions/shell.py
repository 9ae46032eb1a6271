"""`shell`: a command on the node (off unless the agent was started with shell steps allowed).

Its stdout and stderr lines go to the run's log as they come; a non-zero exit
fails the step with the code and the last stderr line; cancelling the step
kills the command (its whole process group).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from typing import Any

from agent.errors import StepFailed
from agent.pipeline.context import StepContext
from agent.pipeline.inputs import Shell

__all__ = ["run"]

_OUTPUT_KEPT = 4096
"""Characters of stdout kept as the step's `stdout` output (the end of it)."""
_LINE_LIMIT = 1 << 20
"""The longest output line read whole."""


async def run(ctx: StepContext, inputs: Shell) -> dict[str, Any]:
    """Run the command: {exit_code, stdout} (stdout: its last few KiB)."""
    if not ctx.allow_shell:
        raise StepFailed("shell steps are off on this node (start the agent with shell steps allowed)")
    argv = inputs.command if isinstance(inputs.command, list) else ["/bin/sh", "-c", inputs.command]
    cwd = ctx.path(inputs.cwd, "cwd")
    if not cwd.is_dir():
        raise StepFailed(f"the working directory {cwd} does not exist")
    ctx.log(ctx.redact("$ " + " ".join(argv)))
    try:
        process = await asyncio.create_subprocess_exec(
            *argv, cwd=cwd, env={**os.environ, **inputs.env}, stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, start_new_session=True,
            limit=_LINE_LIMIT)
    except OSError as exc:
        raise StepFailed(f"cannot start {argv[0]}: {exc.strerror or exc}") from exc
    stdout: list[str] = []
    stderr: list[str] = []
    try:
        await asyncio.gather(_pump(ctx, process.stdout, "stdout", stdout), _pump(ctx, process.stderr, "stderr", stderr))
        code = await process.wait()
    except asyncio.CancelledError:
        await _kill(process)
        raise
    if code != 0:
        last = next((line for line in reversed(stderr) if line.strip()), "")
        raise StepFailed(f"the command exited with code {code}" + (f": {ctx.redact(last)}" if last else ""))
    return {"exit_code": 0, "stdout": "\n".join(stdout)[-_OUTPUT_KEPT:]}


async def _pump(ctx: StepContext, reader: asyncio.StreamReader | None, stream: str, kept: list[str]) -> None:
    if reader is None:
        return
    while raw := await reader.readline():
        line = raw.decode("utf-8", "replace").rstrip("\r\n")
        kept.append(line)
        del kept[:-200]
        ctx.log(ctx.redact(line), stream=stream)


async def _kill(process: asyncio.subprocess.Process) -> None:
    """SIGKILL the command's process group and reap it."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)
    with contextlib.suppress(ProcessLookupError):
        process.kill()
    with contextlib.suppress(Exception):
        await asyncio.wait_for(process.wait(), 5.0)
