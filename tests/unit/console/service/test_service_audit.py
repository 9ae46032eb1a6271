"""AuditLog: JSON lines appended, read newest first with filters, rotated, robust to a torn line."""

from __future__ import annotations

import json
import stat
from datetime import UTC, datetime, timedelta
from pathlib import Path

from console.service.audit import AuditLog


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2030, 1, 1, tzinfo=UTC)

    def __call__(self) -> datetime:
        self.now += timedelta(seconds=1)
        return self.now


def test_an_entry_is_one_json_line_with_who_what_and_how_it_ended(tmp_path: Path) -> None:
    audit = AuditLog(tmp_path / "audit.log", clock=Clock())
    audit.record(actor="ci-bot", role="operator", via="rest", action="POST /api/v1/nodes/{node_id}/pipelines",
                 target=("node", "n1"), status=201)
    lines = (tmp_path / "audit.log").read_text().splitlines()
    assert [json.loads(line) for line in lines] == [{
        "time": "2030-01-01T00:00:01Z", "actor": "ci-bot", "role": "operator", "via": "rest",
        "action": "POST /api/v1/nodes/{node_id}/pipelines", "target": {"kind": "node", "id": "n1"},
        "status": "201",
    }]
    assert stat.S_IMODE((tmp_path / "audit.log").stat().st_mode) == 0o600


def test_query_is_newest_first_and_filters(tmp_path: Path) -> None:
    audit = AuditLog(tmp_path / "audit.log", clock=Clock())
    audit.record(actor="alice", role="admin", via="rest", action="POST /api/v1/nodes", target=("node", "n1"),
                 status=201)
    audit.record(actor="bob", role="operator", via="grpc", action="HubService.StartRun", target=("node", "n2"),
                 status="OK")
    audit.record(actor="alice", role="admin", via="grpc", action="HubService.CancelRun", target=("run", "r1"),
                 status="NOT_FOUND")
    assert [e.action for e in audit.query()] == ["HubService.CancelRun", "HubService.StartRun", "POST /api/v1/nodes"]
    assert [e.target.id for e in audit.query(actor="alice") if e.target] == ["r1", "n1"]
    assert [e.actor for e in audit.query(kind="node")] == ["bob", "alice"]
    assert [e.action for e in audit.query(target="n2")] == ["HubService.StartRun"]
    assert len(audit.query(limit=1)) == 1
    assert audit.query(actor="nobody") == []


def test_it_rotates_and_reads_across_the_rotated_files(tmp_path: Path) -> None:
    audit = AuditLog(tmp_path / "audit.log", max_bytes=600, keep=2, clock=Clock())
    for i in range(40):
        audit.record(actor="a", via="rest", action=f"POST /x/{i}", status=200)
    files = sorted(p.name for p in tmp_path.iterdir())
    assert files == ["audit.log", "audit.log.1", "audit.log.2"]
    assert all(p.stat().st_size <= 600 for p in tmp_path.iterdir())
    newest = [e.action for e in audit.query(limit=1000)]
    assert newest[0] == "POST /x/39"
    assert newest == [f"POST /x/{i}" for i in range(39, 39 - len(newest), -1)]  # contiguous: only the oldest go


def test_a_torn_or_foreign_line_is_skipped(tmp_path: Path) -> None:
    audit = AuditLog(tmp_path / "audit.log", clock=Clock())
    audit.record(actor="a", via="rest", action="POST /one", status=201)
    with (tmp_path / "audit.log").open("a") as f:
        f.write('{"hand": "edit"}\n{"time": "2030-')
    audit.record(actor="a", via="rest", action="POST /two", status=201)
    assert [e.action for e in audit.query()] == ["POST /two", "POST /one"]


def test_an_unwritable_log_does_not_fail_the_caller(tmp_path: Path) -> None:
    audit = AuditLog(tmp_path / "missing-dir" / "audit.log")
    entry = audit.record(actor="a", via="rest", action="POST /x", status=201)
    assert entry.actor == "a" and audit.query() == []
