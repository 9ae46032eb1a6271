"""`agent.outbox.Outbox`: seqs, bounds, persistence of pipeline events and acks, resend order."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from agent.outbox import SEQ_BLOCK, Outbox
from agent.state import StateStore
from proto import gamenode_pb2 as pb


def _outbox(path: Path, limit: int = 100) -> Outbox:
    return Outbox(StateStore(path), limit=limit)


def _event(run: str, progress: int = 0) -> pb.PipelineEvent:
    return pb.PipelineEvent(run_id=run, step="pull", state=pb.STEP_STATE_RUNNING, progress=progress)


def _log(text: str) -> pb.LogChunk:
    return pb.LogChunk(source="agent", lines=[pb.LogLine(level="info", text=text)])


def _files(outbox: Outbox) -> list[str]:
    return sorted(p.name for p in outbox.directory.iterdir())


def test_seqs_start_at_one_and_increase(tmp_path: Path) -> None:
    outbox = _outbox(tmp_path)
    assert outbox.first_unacked_seq() == 1
    assert [outbox.add(_log(str(i))) for i in range(3)] == [1, 2, 3]
    assert outbox.first_unacked_seq() == 1
    assert outbox.next_seq == 4
    messages = outbox.pending()
    assert [m.seq for m in messages] == [1, 2, 3]
    assert [m.WhichOneof("body") for m in messages] == ["log_chunk"] * 3
    assert messages[2].log_chunk.lines[0].text == "2"


def test_every_reliable_body_kind_is_accepted(tmp_path: Path) -> None:
    outbox = _outbox(tmp_path)
    outbox.add(pb.CommandAck(command_id="c", ok=True))
    outbox.add(_event("r"))
    outbox.add(_log("x"))
    outbox.add(pb.InstanceReport(instances=[pb.InstanceStatus(instance_id="i", state="running")]))
    outbox.add(pb.Inventory())
    kinds = [m.WhichOneof("body") for m in outbox.pending()]
    assert kinds == ["command_ack", "pipeline_event", "log_chunk", "instance_report", "inventory"]


def test_pending_from_a_seq_keeps_order(tmp_path: Path) -> None:
    outbox = _outbox(tmp_path)
    for i in range(10):
        outbox.add(_event("r", i))
    assert [m.seq for m in outbox.pending(7)] == [7, 8, 9, 10]
    assert outbox.pending(11) == []


def test_ack_is_cumulative_and_unlinks_persisted_events(tmp_path: Path) -> None:
    outbox = _outbox(tmp_path)
    outbox.add(_event("r", 1))
    outbox.add(_log("volatile"))
    outbox.add(pb.CommandAck(command_id="c", ok=True))
    outbox.add(_event("r", 2))
    assert _files(outbox) == ["1.pb", "3.pb", "4.pb"]
    assert outbox.ack(3) == 3
    assert [m.seq for m in outbox.pending()] == [4]
    assert _files(outbox) == ["4.pb"]
    assert outbox.first_unacked_seq() == 4
    assert outbox.ack(3) == 0
    outbox.ack(100)
    assert len(outbox) == 0
    assert _files(outbox) == []
    assert outbox.first_unacked_seq() == outbox.next_seq == 5


def test_persisted_files_are_private(tmp_path: Path) -> None:
    outbox = _outbox(tmp_path)
    outbox.add(_event("r"))
    assert stat.S_IMODE(outbox.directory.stat().st_mode) == 0o700
    assert stat.S_IMODE((outbox.directory / "1.pb").stat().st_mode) == 0o600


def test_persistent_events_survive_a_reload_volatile_ones_do_not(tmp_path: Path) -> None:
    outbox = _outbox(tmp_path)
    outbox.add(_event("r", 10))
    outbox.add(_log("gone after restart"))
    outbox.add(_event("r", 20))
    outbox.add(pb.CommandAck(command_id="c1", ok=False, error="no"))
    outbox.ack(1)
    reloaded = _outbox(tmp_path)
    pending = reloaded.pending()
    assert [m.seq for m in pending] == [3, 4]
    assert pending[0].pipeline_event.progress == 20
    assert pending[1].command_ack.command_id == "c1"
    assert reloaded.first_unacked_seq() == 3
    assert reloaded.add(_event("r", 30)) > 4  # never reuses a seq


def test_seqs_never_repeat_across_a_crash(tmp_path: Path) -> None:
    """Volatile events are not on disk; the seq reservation in state.json still moves the counter on."""
    outbox = _outbox(tmp_path)
    last = 0
    for i in range(SEQ_BLOCK + 5):
        last = outbox.add(_log(str(i)))
    crashed = _outbox(tmp_path)  # no checkpoint(): a crash
    assert crashed.add(_log("after")) > last


def test_checkpoint_avoids_a_gap_after_a_clean_exit(tmp_path: Path) -> None:
    outbox = _outbox(tmp_path)
    outbox.add(_log("a"))
    outbox.add(_log("b"))
    outbox.checkpoint()
    assert _outbox(tmp_path).add(_log("c")) == 3


def test_full_outbox_drops_the_oldest_volatile_event(tmp_path: Path) -> None:
    outbox = _outbox(tmp_path, limit=3)
    outbox.add(_event("r", 1))
    outbox.add(_log("old"))
    outbox.add(_log("newer"))
    outbox.add(_log("newest"))
    assert outbox.dropped == 1
    pending = outbox.pending()
    assert [m.seq for m in pending] == [1, 3, 4]
    assert pending[0].WhichOneof("body") == "pipeline_event"


def test_pipeline_events_are_never_dropped(tmp_path: Path) -> None:
    outbox = _outbox(tmp_path, limit=2)
    for i in range(4):
        outbox.add(_event("r", i))
    assert [m.seq for m in outbox.pending()] == [1, 2, 3, 4]
    assert outbox.dropped == 0
    outbox.add(_log("no room"))  # only persistent events left: the volatile newcomer goes
    assert outbox.dropped == 1
    assert [m.seq for m in outbox.pending()] == [1, 2, 3, 4]


def test_advance_to_moves_the_counter_past_what_the_hub_saw(tmp_path: Path) -> None:
    outbox = _outbox(tmp_path)
    outbox.advance_to(500)
    assert outbox.add(_log("x")) == 500
    outbox.advance_to(10)
    assert outbox.next_seq == 501


def test_torn_and_corrupt_files_are_skipped_on_load(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    outbox = _outbox(tmp_path)
    outbox.add(_event("r", 1))
    (outbox.directory / ".7.pb.abc.tmp").write_bytes(b"half")
    (outbox.directory / "9.pb").write_bytes(b"\xff\xff garbage")
    reloaded = _outbox(tmp_path)
    assert [m.seq for m in reloaded.pending()] == [1]
    assert _files(reloaded) == ["1.pb", "9.pb.corrupt"]
    assert "9.pb is unreadable" in caplog.text
