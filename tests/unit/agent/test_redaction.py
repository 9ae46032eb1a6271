"""Secret param values never leave the agent in a game instance's output, its LOGS tail or its errors.

`SecretBook` alone, then the pipeline runner filling it (and refilling it after a restart from the run
records, which stay while the instance lives), and the instance watcher redacting with it.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from agent.instances import InstanceWatcher
from agent.pipeline.context import StepContext
from agent.pipeline.engine import PipelineRunner
from agent.pipeline.runs import RunRecord, RunStore
from agent.redaction import SecretBook
from agent.runtime.docker import ContainerInfo
from agent.settings import AgentSettings
from proto import gamenode_pb2 as pb

WAIT = 10.0
PASSWORD = "s3cr3t-Regi$try.pw"
TOKEN = "tok-42"

PIPELINE = """\
apiVersion: gamenode/v1
kind: Pipeline
metadata: {name: start, instance: create}
params:
  registry_password: {type: string, secret: true}
  rcon: {type: string, secret: true, default: ""}
  motd: {type: string, default: hello}
steps:
  - {name: login, action: shell, with: {command: "login ${params.registry_password}"}}
"""


# --- the book ------------------------------------------------------------------------------------


def test_every_known_secret_is_redacted_longest_first() -> None:
    book = SecretBook()
    assert book.redact("nothing known yet: hunter2") == "nothing known yet: hunter2"
    book.add_run("r1", "inst-1", ["hunter2", ""])
    book.add_run("r2", "", ["hunter2-and-more", "a.b*c"])  # regex characters are literal
    assert book.redact("pw=hunter2-and-more x hunter2 y a.b*c z abbbc") == "pw=*** x *** y *** z abbbc"
    assert book.values == {"hunter2", "hunter2-and-more", "a.b*c"}


def test_pins_follow_the_instances_seen_and_pruned_runs_are_forgotten() -> None:
    book = SecretBook()
    book.add_run("r1", "inst-1", ["one"])
    book.add_run("r2", "inst-2", ["two"])
    book.add_run("r3", "", ["three"])  # no instance: nothing can print it later
    book.add_run("r4", "inst-4", [])  # no secrets: not kept
    assert book.pinned_runs() == {"r1", "r2"}  # before any report every instance may be alive
    book.instances_seen(["inst-2", "inst-9"])
    assert book.pinned_runs() == {"r2"}
    book.forget_runs(["r1", "r3"])
    assert book.values == {"two"} and book.redact("one two three") == "one *** three"


def test_prune_keeps_pinned_records(tmp_path: Path) -> None:
    store = RunStore(tmp_path / "runs")
    for i in range(3):
        store.save(RunRecord(f"r{i}", PIPELINE, state="succeeded", finished_at=time.time() - 30 * 86400))
    assert sorted(store.prune(pinned={"r1"})) == ["r0", "r2"]
    assert store.run_ids() == ["r1"]


# --- the runner fills the book -------------------------------------------------------------------


async def _ok(ctx: StepContext, inputs: Any) -> dict[str, Any]:
    return {}


def runner(state_dir: Path) -> PipelineRunner:
    class Sink:
        def emit_pipeline_event(self, event: pb.PipelineEvent) -> int:
            return 0

        def emit_log(self, chunk: pb.LogChunk) -> int:
            return 0

    class Ports:
        def release(self, owner: str) -> list[int]:
            return []

    settings = AgentSettings(hub="hub:1", node_id="n1", token="t", state_dir=state_dir, insecure=True)
    return PipelineRunner(Sink(), settings, None, Ports(), actions={"shell": _ok})  # type: ignore[arg-type]


async def test_the_runner_books_each_runs_secrets_and_finds_them_again_after_a_restart(tmp_path: Path) -> None:
    first = runner(tmp_path)
    outcome = first.start("r1", PIPELINE, {"registry_password": PASSWORD, "rcon": TOKEN}, "inst-1")
    assert outcome.ok, outcome.error
    await asyncio.wait_for(first.wait("r1"), WAIT)
    assert first.secrets.values == {PASSWORD, TOKEN}
    assert first.secrets.pinned_runs() == {"r1"}

    again = runner(tmp_path)  # a new agent process on the same state dir
    assert again.secrets.values == {PASSWORD, TOKEN}
    assert again.secrets.redact(f"motd hello, pw {PASSWORD}") == "motd hello, pw ***"


# --- the watcher redacts instance output ----------------------------------------------------------


def _info(cid: str, instance: str, error: str = "") -> ContainerInfo:
    return ContainerInfo(id=cid, name=f"gn-{instance}", instance_id=instance, run_id="r1", state="running",
                         exit_code=0, image="game:1", started_at=datetime(2024, 5, 1, tzinfo=UTC),
                         finished_at=None, error=error)


class Runtime:
    """One container that prints what the test says, then follows until stopped."""

    def __init__(self, info: ContainerInfo, lines: list[tuple[str, str]]) -> None:
        self.info = info
        self.lines = lines

    def list_managed(self, all: bool = True) -> list[ContainerInfo]:
        return [self.info]

    def inspect(self, name_or_id: str) -> ContainerInfo | None:
        return self.info if name_or_id == self.info.id else None

    def watch_events(self, on_event: Any, stop: threading.Event) -> None:
        stop.wait()

    def stream_logs(self, name_or_id: str, since: float | None, stop: threading.Event, follow: bool = True,
                    tail: int | None = None) -> Iterator[tuple[str, str]]:
        yield from self.lines
        while follow and not stop.is_set():
            stop.wait(0.01)


class Sink:
    def __init__(self) -> None:
        self.reports: list[pb.InstanceReport] = []
        self.chunks: list[pb.LogChunk] = []

    def emit_instance_report(self, report: pb.InstanceReport) -> int:
        self.reports.append(report)
        return len(self.reports)

    def emit_log(self, chunk: pb.LogChunk) -> int:
        self.chunks.append(chunk)
        return len(self.chunks)

    def texts(self) -> list[str]:
        return [line.text for chunk in self.chunks for line in chunk.lines]


async def _until(what: str, check: Any) -> None:
    deadline = asyncio.get_running_loop().time() + WAIT
    while not check():
        if asyncio.get_running_loop().time() > deadline:
            pytest.fail(f"gave up waiting for {what}")
        await asyncio.sleep(0.005)


async def test_a_game_that_echoes_its_registry_password_sends_stars(tmp_path: Path) -> None:
    book = runner(tmp_path).secrets
    book.add_run("r1", "inst-1", [PASSWORD, TOKEN])
    long_line = "x" * 16380 + PASSWORD  # crosses the 16 KiB cut: no part of the secret may survive it
    lines = [("stdout", f"docker login -p {PASSWORD} registry.local"), ("stderr", f"rcon={TOKEN}!"),
             ("stdout", long_line)]
    runtime = Runtime(_info("c1", "inst-1", error=f"exec failed: {PASSWORD}"), lines)
    sink = Sink()
    watcher = InstanceWatcher(sink, runtime, secrets=book, max_delay=0.01)  # type: ignore[arg-type]
    task = asyncio.create_task(watcher.run())
    try:
        await _until("three lines of output", lambda: len(sink.texts()) >= 3)
        outcome = await watcher.container_action(pb.ContainerAction(action=pb.ContainerAction.ACTION_LOGS,
                                                                    instance_id="inst-1", tail=10))
        assert outcome.ok, outcome.error
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)

    texts = sink.texts()
    assert texts[:2] == ["docker login -p *** registry.local", "rcon=***!"]
    assert len(texts) == 6 and texts[3:5] == texts[:2]  # the LOGS tail is redacted the same way
    assert {s.error for r in sink.reports for s in r.instances} == {"exec failed: ***"}
    sent = "".join(str(c) for c in sink.chunks) + "".join(str(r) for r in sink.reports)
    for part in (PASSWORD, TOKEN, PASSWORD[:4]):
        assert part not in sent
    assert book.pinned_runs() == {"r1"}  # the report saw inst-1's container
