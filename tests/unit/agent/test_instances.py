"""`agent.instances.InstanceWatcher` with a fake runtime: reports, followed output, events and hub actions."""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

import pytest

from agent.errors import StepFailed
from agent.instances import InstanceWatcher
from agent.runtime.docker import ContainerInfo
from proto import gamenode_pb2 as pb

WAIT = 10.0
A = pb.ContainerAction


def _info(cid: str, instance: str, state: str = "running", exit_code: int = 0) -> ContainerInfo:
    return ContainerInfo(id=cid, name=f"gn-{instance}", instance_id=instance, run_id="r1", state=state,
                         exit_code=exit_code, image="game:1", started_at=datetime(2024, 5, 1, tzinfo=UTC),
                         finished_at=None, error="")


class FakeRuntime:
    def __init__(self, containers: list[ContainerInfo] | None = None) -> None:
        self.containers = {c.id: c for c in containers or []}
        self.logs: dict[str, list[tuple[str, str]]] = {}
        self.follow_until: dict[str, threading.Event] = {}
        self.calls: list[tuple[Any, ...]] = []
        self.events: Callable[[str, ContainerInfo], None] | None = None
        self.watching = threading.Event()
        self.down = False

    def list_managed(self, all: bool = True) -> list[ContainerInfo]:
        if self.down:
            raise StepFailed("listing containers failed: no Docker socket")
        return list(self.containers.values())

    def inspect(self, name_or_id: str) -> ContainerInfo | None:
        return self.containers.get(name_or_id)

    def stop(self, name_or_id: str, grace: float) -> bool:
        self.calls.append(("stop", name_or_id, grace))
        return True

    def restart(self, name_or_id: str, grace: float) -> bool:
        self.calls.append(("restart", name_or_id, grace))
        return True

    def remove(self, name_or_id: str, force: bool = True, volumes: bool = False) -> bool:
        self.calls.append(("remove", name_or_id, force))
        self.containers.pop(name_or_id, None)
        return True

    def watch_events(self, on_event: Callable[[str, ContainerInfo], None], stop: threading.Event) -> None:
        self.events = on_event
        self.watching.set()
        stop.wait()

    def stream_logs(self, name_or_id: str, since: float | None, stop: threading.Event, follow: bool = True,
                    tail: int | None = None) -> Iterator[tuple[str, str]]:
        self.calls.append(("logs", name_or_id, follow, tail))
        lines = self.logs.get(name_or_id, [])
        yield from (lines[-tail:] if tail else lines)
        if follow:
            until = self.follow_until.setdefault(name_or_id, threading.Event())
            while not (until.is_set() or stop.is_set()):
                until.wait(0.01)


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

    def lines(self, source: str) -> list[pb.LogLine]:
        return [line for chunk in self.chunks if chunk.source == source for line in chunk.lines]


class Ports:
    def __init__(self) -> None:
        self.released: list[str] = []

    def release(self, owner: str) -> list[int]:
        self.released.append(owner)
        return [20000]


async def eventually(predicate: Callable[[], bool], what: str) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + WAIT
    while not predicate():
        if loop.time() > deadline:
            pytest.fail(f"gave up waiting for: {what}")
        await asyncio.sleep(0.005)


class Watching:
    def __init__(self, runtime: FakeRuntime, **options: Any) -> None:
        self.sink = Sink()
        self.ports = Ports()
        self.watcher = InstanceWatcher(self.sink, runtime, ports=self.ports, **options)  # type: ignore[arg-type]
        self.task = asyncio.create_task(self.watcher.run())

    async def stop(self) -> None:
        self.task.cancel()
        await asyncio.gather(self.task, return_exceptions=True)


async def test_a_full_report_lists_every_instance_and_follows_the_running_ones() -> None:
    runtime = FakeRuntime([_info("c1", "i1"), _info("c2", "i2", "exited", 3), _info("c3", "")])
    runtime.logs["c1"] = [("stdout", "listening on 8080"), ("stderr", "warning: low memory")]
    w = Watching(runtime)
    await eventually(lambda: len(w.sink.reports) >= 1, "a report")
    report = w.sink.reports[0]
    assert report.full
    assert [(s.instance_id, s.container_id, s.state, s.exit_code) for s in report.instances] == [
        ("i1", "c1", "running", 0), ("i2", "c2", "exited", 3)]
    assert report.instances[0].started_at.ToDatetime(tzinfo=UTC) == datetime(2024, 5, 1, tzinfo=UTC)
    await eventually(lambda: len(w.sink.lines("instance:i1")) == 2, "two lines")
    lines = w.sink.lines("instance:i1")
    assert [(line.text, line.level, line.stream) for line in lines] == [
        ("listening on 8080", "info", "stdout"), ("warning: low memory", "warning", "stderr")]
    assert w.watcher.following == ["c1"]
    await w.stop()


async def test_reports_again_on_connect_and_on_its_interval() -> None:
    runtime = FakeRuntime([_info("c1", "i1", "exited")])
    w = Watching(runtime, full_interval=0.05)
    await eventually(lambda: len(w.sink.reports) >= 3, "three periodic reports")
    w.watcher.full_interval = 3600
    await asyncio.sleep(0.06)
    count = len(w.sink.reports)
    w.watcher.report_now()
    await eventually(lambda: len(w.sink.reports) == count + 1, "the on-connect report")
    await w.stop()


async def test_without_docker_nothing_is_reported_quietly(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    runtime = FakeRuntime()
    runtime.down = True
    w = Watching(runtime, full_interval=0.01)
    await eventually(lambda: w.watcher.available is False, "a failed listing")
    await asyncio.sleep(0.05)
    assert w.sink.reports == []
    assert sum("docker does not answer" in r.message for r in caplog.records) == 1
    runtime.down = False
    await eventually(lambda: len(w.sink.reports) >= 1, "a report once docker is back")
    await w.stop()


async def test_a_runtime_without_events_still_reports() -> None:
    class Minimal:
        status = "unavailable: no docker in this test"

        def list_managed(self, all: bool = True) -> list[ContainerInfo]:
            return []

    sink = Sink()
    watcher = InstanceWatcher(sink, Minimal())  # type: ignore[arg-type]
    task = asyncio.create_task(watcher.run())
    await eventually(lambda: len(sink.reports) == 1, "an empty full report")
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)


async def test_events_send_incremental_reports_and_start_or_stop_following() -> None:
    runtime = FakeRuntime()
    w = Watching(runtime)
    await eventually(lambda: runtime.watching.is_set() and len(w.sink.reports) == 1, "watching events")
    started = _info("c9", "i9")
    runtime.containers["c9"] = started
    runtime.logs["c9"] = [("stdout", "hello")]
    assert runtime.events is not None
    runtime.events("start", started)
    await eventually(lambda: len(w.sink.reports) == 2, "the start report")
    assert not w.sink.reports[1].full
    await eventually(lambda: [line.text for line in w.sink.lines("instance:i9")] == ["hello"], "its output")

    runtime.follow_until["c9"].set()  # the container stops: its log stream ends
    died = _info("c9", "i9", "exited", 137)
    runtime.containers["c9"] = died
    w.watcher.settle = 0.01
    runtime.events("die", died)
    runtime.events("kill", died)  # not reported
    runtime.events("start", _info("cx", ""))  # not an instance: ignored
    await eventually(lambda: len(w.sink.reports) == 3, "the die report")
    assert (w.sink.reports[2].instances[0].state, w.sink.reports[2].instances[0].exit_code) == ("exited", 137)
    await eventually(lambda: w.watcher.following == [], "following ended")
    await w.stop()


async def test_output_is_batched_by_line_count() -> None:
    runtime = FakeRuntime([_info("c1", "i1")])
    runtime.logs["c1"] = [("stdout", f"line {i}") for i in range(450)]
    w = Watching(runtime, max_lines=200, max_delay=0.05)
    await eventually(lambda: len(w.sink.lines("instance:i1")) == 450, "every line")
    sizes = [len(c.lines) for c in w.sink.chunks]
    assert max(sizes) <= 200 and sum(sizes) == 450
    assert [line.text for line in w.sink.lines("instance:i1")] == [f"line {i}" for i in range(450)]
    await w.stop()


# --- hub actions -----------------------------------------------------------------------------------------------


async def test_stop_and_restart_find_the_container_by_its_instance() -> None:
    runtime = FakeRuntime([_info("old", "i1", "exited"), _info("c1", "i1")])
    watcher = InstanceWatcher(Sink(), runtime, grace=2.0)  # type: ignore[arg-type]
    assert (await watcher.container_action(A(action=A.ACTION_STOP, instance_id="i1"))).ok
    assert (await watcher.container_action(A(action=A.ACTION_RESTART, instance_id="i1", container_id="c1"))).ok
    assert runtime.calls == [("stop", "c1", 2.0), ("restart", "c1", 2.0)]


async def test_an_instance_without_a_container_is_an_error() -> None:
    runtime = FakeRuntime([_info("c1", "other")])
    watcher = InstanceWatcher(Sink(), runtime)  # type: ignore[arg-type]
    outcome = await watcher.container_action(A(action=A.ACTION_STOP, instance_id="i1", container_id="c1"))
    assert (outcome.ok, outcome.error) == (False, "stop: instance i1 has no container on this node")
    assert runtime.calls == []


async def test_remove_releases_the_instances_ports() -> None:
    runtime = FakeRuntime([_info("c1", "i1")])
    ports = Ports()
    watcher = InstanceWatcher(Sink(), runtime, ports=ports)  # type: ignore[arg-type]
    assert (await watcher.container_action(A(action=A.ACTION_REMOVE, instance_id="i1"))).ok
    assert runtime.calls == [("remove", "c1", True)] and ports.released == ["i1"]
    again = await watcher.container_action(A(action=A.ACTION_REMOVE, instance_id="i1"))
    assert again.ok and "already removed" in again.error
    assert ports.released == ["i1", "i1"]


async def test_logs_sends_the_tail_for_the_instance() -> None:
    runtime = FakeRuntime([_info("c1", "i1")])
    runtime.logs["c1"] = [("stdout", f"l{i}") for i in range(10)] + [("stderr", "oops")]
    sink = Sink()
    watcher = InstanceWatcher(sink, runtime)  # type: ignore[arg-type]
    assert (await watcher.container_action(A(action=A.ACTION_LOGS, instance_id="i1", tail=3))).ok
    assert [(line.text, line.level) for line in sink.lines("instance:i1")] == [
        ("l8", "info"), ("l9", "info"), ("oops", "warning")]
    assert ("logs", "c1", False, 3) in runtime.calls


async def test_a_docker_failure_is_the_outcome() -> None:
    runtime = FakeRuntime([_info("c1", "i1")])

    def broken(name_or_id: str, grace: float) -> bool:
        raise StepFailed("stopping container c1: permission denied")

    runtime.stop = broken  # type: ignore[method-assign]
    watcher = InstanceWatcher(Sink(), runtime)  # type: ignore[arg-type]
    outcome = await watcher.container_action(A(action=A.ACTION_STOP, instance_id="i1"))
    assert (outcome.ok, outcome.error) == (False, "stop of instance i1: stopping container c1: permission denied")
    unspecified = await watcher.container_action(A(instance_id="i1"))
    assert not unspecified.ok


async def test_a_death_followed_by_a_restart_is_reported_as_running() -> None:
    runtime = FakeRuntime()
    w = Watching(runtime)
    await eventually(lambda: runtime.watching.is_set() and len(w.sink.reports) == 1, "watching events")
    w.watcher.settle = 0.05
    assert runtime.events is not None
    runtime.containers["c7"] = _info("c7", "i7")  # by the time it is inspected, a restart policy started it
    runtime.events("die", _info("c7", "i7", "exited", 1))
    await eventually(lambda: len(w.sink.reports) == 2, "the settled report")
    assert w.sink.reports[1].instances[0].state == "running"
    await w.stop()
