"""`agent.commands.CommandExecutor`: each command id runs at most once; duplicates repeat the first outcome."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from agent.commands import INTERRUPTED, NOT_SUPPORTED, CommandExecutor
from agent.state import CommandOutcome, StateStore
from proto import gamenode_pb2 as pb


def _ping(cid: str) -> pb.Command:
    return pb.Command(command_id=cid, ping=pb.Ping())


async def test_a_duplicate_is_acked_without_running(tmp_path: Path) -> None:
    runs: list[str] = []

    async def handler(command: pb.Command) -> CommandOutcome:
        runs.append(command.command_id)
        return CommandOutcome(True)

    executor = CommandExecutor(StateStore(tmp_path))
    executor.register("ping", handler)
    first = await executor.execute(1, _ping("c1"))
    second = await executor.execute(2, _ping("c1"))
    assert runs == ["c1"]
    assert first == pb.CommandAck(command_id="c1", ok=True)
    assert second == pb.CommandAck(command_id="c1", ok=True, duplicate=True)


async def test_dedupe_survives_a_restart(tmp_path: Path) -> None:
    executor = CommandExecutor(StateStore(tmp_path))
    await executor.execute(5, pb.Command(command_id="r1", run_pipeline=pb.RunPipeline(run_id="r1")))
    restarted = CommandExecutor(StateStore(tmp_path))
    ack = await restarted.execute(6, pb.Command(command_id="r1", run_pipeline=pb.RunPipeline(run_id="r1")))
    assert ack == pb.CommandAck(command_id="r1", ok=False, error=NOT_SUPPORTED, duplicate=True)
    assert restarted.executed == 0
    assert StateStore(tmp_path).state.last_command_seq == 5


@pytest.mark.parametrize("action", ["run_pipeline", "cancel_run", "container_action"])
async def test_unimplemented_actions_fail_but_are_recorded(tmp_path: Path, action: str) -> None:
    store = StateStore(tmp_path)
    command = pb.Command(command_id="x")
    getattr(command, action).SetInParent()
    ack = await CommandExecutor(store).execute(3, command)
    assert ack == pb.CommandAck(command_id="x", ok=False, error=NOT_SUPPORTED)
    assert store.outcome("x") == CommandOutcome(False, NOT_SUPPORTED)


async def test_a_failing_handler_is_an_error_ack(tmp_path: Path) -> None:
    async def broken(command: pb.Command) -> CommandOutcome:
        raise RuntimeError("disk on fire")

    executor = CommandExecutor(StateStore(tmp_path))
    executor.register("ping", broken)
    ack = await executor.execute(1, _ping("c"))
    assert ack is not None
    assert (ack.ok, ack.error) == (False, "RuntimeError: disk on fire")


async def test_a_command_interrupted_by_a_crash_never_runs_again(tmp_path: Path) -> None:
    started = asyncio.Event()

    async def forever(command: pb.Command) -> CommandOutcome:
        started.set()
        await asyncio.Event().wait()
        return CommandOutcome(True)

    executor = CommandExecutor(StateStore(tmp_path))
    executor.register("ping", forever)
    task = asyncio.create_task(executor.execute(1, _ping("slow")))
    await started.wait()
    assert await executor.execute(2, _ping("slow")) is None  # still running: its own ack comes later
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    ack = await CommandExecutor(StateStore(tmp_path)).execute(3, _ping("slow"))
    assert ack == pb.CommandAck(command_id="slow", ok=False, error=INTERRUPTED, duplicate=True)


async def test_a_command_without_id_is_refused(tmp_path: Path) -> None:
    executor = CommandExecutor(StateStore(tmp_path))
    ack = await executor.execute(1, _ping(""))
    assert ack is not None and not ack.ok
    assert executor.executed == 0


def test_unknown_action_cannot_be_registered(tmp_path: Path) -> None:
    async def handler(command: pb.Command) -> CommandOutcome:
        return CommandOutcome(True)

    with pytest.raises(ValueError, match="unknown command action 'reboot'"):
        CommandExecutor(StateStore(tmp_path)).register("reboot", handler)
