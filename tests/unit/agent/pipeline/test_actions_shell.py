"""`shell`: refused unless allowed; output lines to the log; exit codes; killed on cancel."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest
from action_helpers import Recorder, act, make_ctx

from agent.errors import StepFailed


async def test_refused_unless_allowed(tmp_path: Path) -> None:
    with pytest.raises(StepFailed, match="shell steps are off on this node"):
        await act(make_ctx(tmp_path), "shell", command="true")


async def test_output_lines_go_to_the_log_by_stream(tmp_path: Path) -> None:
    recorder = Recorder()
    ctx = make_ctx(tmp_path, recorder, allow_shell=True, secrets=["hunter2"])
    out = await act(ctx, "shell", command="echo one; echo two >&2; echo $GREETING; pwd; echo hunter2",
                    env={"GREETING": "hello"})
    assert recorder.lines("stdout") == ["one", "hello", str(ctx.data_dir), "***"]
    assert recorder.lines("stderr") == ["two"]
    assert out["exit_code"] == 0 and out["stdout"].startswith("one\nhello\n")


async def test_argv_runs_without_a_shell_in_cwd(tmp_path: Path) -> None:
    recorder = Recorder()
    ctx = make_ctx(tmp_path, recorder, allow_shell=True)
    (ctx.data_dir / "sub").mkdir()
    await act(ctx, "shell", command=["/bin/echo", "$HOME", "a b"], cwd="sub")
    assert recorder.lines("stdout") == ["$HOME a b"]


async def test_nonzero_exit_fails_with_the_code_and_last_stderr_line(tmp_path: Path) -> None:
    ctx = make_ctx(tmp_path, allow_shell=True)
    with pytest.raises(StepFailed, match="the command exited with code 3: disk full"):
        await act(ctx, "shell", command="echo starting >&2; echo disk full >&2; exit 3")


async def test_missing_program_and_cwd_fail(tmp_path: Path) -> None:
    ctx = make_ctx(tmp_path, allow_shell=True)
    with pytest.raises(StepFailed, match="cannot start /nonexistent/prog"):
        await act(ctx, "shell", command=["/nonexistent/prog"])
    with pytest.raises(StepFailed, match="does not exist"):
        await act(ctx, "shell", command="true", cwd="nope")


async def test_cancel_kills_the_command(tmp_path: Path) -> None:
    recorder = Recorder()
    ctx = make_ctx(tmp_path, recorder, allow_shell=True)
    task = asyncio.ensure_future(act(ctx, "shell", command="echo $$; exec sleep 60"))
    for _ in range(200):
        if recorder.lines("stdout"):
            break
        await asyncio.sleep(0.02)
    pid = int(recorder.lines("stdout")[0])
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
