"""Hub → agent commands: ids, per-node seqs, pending until acked, resent on reconnect."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

import pytest

from console.errors import Conflict, NotFound, Unavailable
from console.hub import sessions
from proto import gamenode_pb2 as pb

if TYPE_CHECKING:
    from conftest import FakeAgent, Hub


def ping() -> pb.Command:
    return pb.Command(ping=pb.Ping())


async def ack(agent: FakeAgent, command: pb.HubMessage, ok: bool = True) -> None:
    await agent.event(command_ack=pb.CommandAck(command_id=command.command.command_id, ok=ok))


async def test_a_command_gets_an_id_and_a_seq_and_its_ack_resolves_it(hub: Hub) -> None:
    agent = hub.make_agent("n1")
    await agent.connect()
    future = hub.registry.send_command("n1", ping())
    sent = await agent.read_until("command")
    assert sent.seq == 1 and len(sent.command.command_id) == 32 and sent.command.HasField("ping")
    assert not future.done()
    await ack(agent, sent)
    answer = await asyncio.wait_for(future, 10)
    assert answer.ok and answer.command_id == sent.command.command_id
    assert hub.registry.pending_commands("n1") == []

    hub.registry.send_command("n1", pb.Command(command_id="mine", cancel_run=pb.CancelRun(run_id="r1")))
    second = await agent.read_until("command")
    assert (second.seq, second.command.command_id) == (2, "mine")


async def test_commands_wait_for_the_node_and_are_resent_until_acked(hub: Hub) -> None:
    agent = hub.make_agent("n1")
    first = hub.registry.send_command("n1", pb.Command(command_id="c1", ping=pb.Ping()))
    second = hub.registry.send_command("n1", pb.Command(command_id="c2", ping=pb.Ping()))
    await agent.connect()
    got = [await agent.read_until("command"), await agent.read_until("command")]
    assert [(m.seq, m.command.command_id) for m in got] == [(1, "c1"), (2, "c2")]

    await ack(agent, got[0])
    await agent.sync()
    assert first.done() and not second.done()
    await agent.close()
    await agent.ended()

    await agent.connect()  # c2 was never acked: sent again, same id and seq
    again = await agent.read_until("command")
    assert (again.seq, again.command.command_id) == (2, "c2")
    await ack(agent, again, ok=False)
    assert not (await asyncio.wait_for(second, 10)).ok


async def test_a_cancelled_command_is_no_longer_pending(hub: Hub) -> None:
    future = hub.registry.send_command("n1", pb.Command(command_id="c1", ping=pb.Ping()))
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(future, 0.01)
    assert hub.registry.pending_commands("n1") == []


async def test_command_seqs_continue_after_what_the_agent_has_seen(hub: Hub) -> None:
    agent = hub.make_agent("n1")
    await agent.connect(last_command_seq=41)  # seqs handed out by a hub before a restart
    hub.registry.send_command("n1", ping())
    assert (await agent.read_until("command")).seq == 42


async def test_a_duplicate_command_id_and_too_many_pending_are_refused(
    hub: Hub, monkeypatch: pytest.MonkeyPatch
) -> None:
    hub.registry.send_command("n1", pb.Command(command_id="c1", ping=pb.Ping()))
    with pytest.raises(Conflict, match="already pending"):
        hub.registry.send_command("n1", pb.Command(command_id="c1", ping=pb.Ping()))
    monkeypatch.setattr(sessions, "MAX_PENDING_COMMANDS", 1)
    with pytest.raises(Conflict, match="waiting"):
        hub.registry.send_command("n1", ping())


async def test_pending_commands_fail_when_the_node_is_deleted_or_the_hub_stops(hub: Hub) -> None:
    hub.make_agent("n1")
    hub.make_agent("n2")
    doomed = hub.registry.send_command("n1", ping())
    hub.services.nodes.delete_node("n1")
    with pytest.raises(NotFound):
        await asyncio.wait_for(doomed, 10)

    stranded = hub.registry.send_command("n2", ping())
    await hub.runtime.stop(grace=0)
    with pytest.raises(Unavailable):
        await stranded
