"""Game instances on this node: reports of their containers, their output as logs, and the hub's actions.

    watcher = InstanceWatcher(session, runtime, ports=ports)
    task = asyncio.create_task(watcher.run())     # until cancelled (or `close()`)
    watcher.report_now()                          # on every (re)connect
    outcome = await watcher.container_action(command.container_action)

- A full `InstanceReport` (every gamenode container on the node, `full=True`)
  when the session connects and every `full_interval` seconds; an incremental
  one (that container only) on the docker events start, die, oom and destroy,
  with the exit code.
- The stdout/stderr of each running gamenode container is followed and sent as
  `LogChunk(source="instance:<id>")`, stderr lines at level "warning", at most
  `MAX_LINES` lines or `MAX_DELAY` seconds per chunk. Following ends with the
  container.
- Every line of that output, the LOGS tail and each instance's error are
  redacted with every secret param value the agent knows (`SecretBook`):
  a container may print the registry password its run pulled with.
- Hub actions (STOP, RESTART, REMOVE, LOGS) find the instance's container by
  `container_id`, else by its `gamenode.instance` label. REMOVE releases the
  instance's host-port reservations.

Docker calls block, so they run in threads: one-off calls with
`asyncio.to_thread`, the event stream and each log stream in a daemon thread
of their own (they last as long as the containers, and must not hold the
default executor's workers). Containers without an instance id are ignored.
Without Docker the watcher reports nothing and says so once in the log.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import threading
import time
from collections.abc import Callable, Iterator
from typing import Protocol

from agent.log import NodeLogger
from agent.logbatch import MAX_DELAY, MAX_LINES, LineBatcher, log_line
from agent.redaction import SecretBook
from agent.runtime.docker import ContainerInfo
from agent.state import CommandOutcome
from proto import gamenode_pb2 as pb

__all__ = ["FULL_INTERVAL", "REPORTED_EVENTS", "InstanceWatcher", "ManagedRuntime", "instance_status"]

FULL_INTERVAL = 30.0
"""Seconds between full instance reports."""
REPORTED_EVENTS = frozenset({"start", "die", "oom", "destroy"})
SETTLING_EVENTS = frozenset({"die", "oom"})
"""Reported `SETTLE` seconds later, as the container is then: a restart (policy or action) is not a death."""
SETTLE = 1.0
"""Docker events that send an incremental report."""
STOP_GRACE = 10.0
"""Seconds between SIGTERM and SIGKILL for the hub's STOP and RESTART."""
DEFAULT_TAIL = 100
MAX_LINE = 16384
"""Characters kept of one output line."""

_Action = pb.ContainerAction


class ManagedRuntime(Protocol):
    """The docker operations the watcher uses (`agent.runtime.DockerRuntime`); all block."""

    def list_managed(self, all: bool = True) -> list[ContainerInfo]: ...

    def inspect(self, name_or_id: str) -> ContainerInfo | None: ...

    def stop(self, name_or_id: str, grace: float) -> bool: ...

    def restart(self, name_or_id: str, grace: float) -> bool: ...

    def remove(self, name_or_id: str, force: bool = True, volumes: bool = False) -> bool: ...

    def watch_events(self, on_event: Callable[[str, ContainerInfo], None], stop: threading.Event) -> None: ...

    def stream_logs(self, name_or_id: str, since: float | None, stop: threading.Event, follow: bool = True,
                    tail: int | None = None) -> Iterator[tuple[str, str]]: ...


class InstanceSink(Protocol):
    def emit_instance_report(self, report: pb.InstanceReport) -> int: ...

    def emit_log(self, chunk: pb.LogChunk) -> int: ...


class PortReleaser(Protocol):
    def release(self, owner: str) -> list[int]: ...


def instance_status(info: ContainerInfo, secrets: SecretBook | None = None) -> pb.InstanceStatus:
    """A container as the hub sees an instance (its error redacted with `secrets`)."""
    error = secrets.redact(info.error) if secrets is not None and info.error else info.error
    status = pb.InstanceStatus(instance_id=info.instance_id, container_id=info.id, state=info.state,
                               exit_code=info.exit_code, run_id=info.run_id, image=info.image, error=error)
    if info.started_at is not None:
        status.started_at.FromDatetime(info.started_at)
    if info.finished_at is not None:
        status.finished_at.FromDatetime(info.finished_at)
    return status


class _Follower:
    """One container's output, read in a thread and handed to the loop in bunches."""

    def __init__(self, watcher: InstanceWatcher, info: ContainerInfo, since: float | None) -> None:
        self.watcher = watcher
        self.info = info
        self.since = since
        self.stop = threading.Event()
        self._pending: collections.deque[tuple[str, str]] = collections.deque()
        self._lock = threading.Lock()
        self._scheduled = False
        self.thread = threading.Thread(target=self._read, name=f"logs {info.name or info.id[:12]}", daemon=True)

    def _read(self) -> None:
        redact = self.watcher.secrets.redact  # here, off the loop; before the cut, so no part of a secret is left
        try:
            for stream, line in self.watcher.runtime.stream_logs(self.info.id, self.since, self.stop):
                self._push(stream, redact(line)[:MAX_LINE])
        except Exception as exc:  # the daemon went away, the container vanished: the report says the rest
            self.watcher.log.debug("following the output of %s ended: %s", self.info.id[:12], exc)
        finally:
            self.watcher.call_soon(self.watcher.followed_to_the_end, self)

    def _push(self, stream: str, line: str) -> None:
        with self._lock:
            self._pending.append((stream, line))
            if self._scheduled:
                return
            self._scheduled = True
        self.watcher.call_soon(self.drain)

    def drain(self) -> None:
        """On the loop: hand the lines read so far to the instance's batcher."""
        with self._lock:
            lines = list(self._pending)
            self._pending.clear()
            self._scheduled = False
        batch = self.watcher.batcher(self.info.instance_id)
        for stream, line in lines:
            batch.add(line, "warning" if stream == "stderr" else "info", stream)


class InstanceWatcher:
    """Reports this node's gamenode containers and follows their output."""

    def __init__(
        self,
        sink: InstanceSink,
        runtime: ManagedRuntime,
        *,
        ports: PortReleaser | None = None,
        log: logging.Logger | NodeLogger | None = None,
        full_interval: float = FULL_INTERVAL,
        max_lines: int = MAX_LINES,
        max_delay: float = MAX_DELAY,
        grace: float = STOP_GRACE,
        secrets: SecretBook | None = None,
    ) -> None:
        self._sink = sink
        self.runtime = runtime
        self.ports = ports
        self.log = log or logging.getLogger(__name__)
        self.full_interval = full_interval
        self.max_lines = max_lines
        self.max_delay = max_delay
        self.grace = grace
        self.secrets = secrets if secrets is not None else SecretBook()
        """Redacts instance output and errors; the pipeline runner's book (it adds each run's secrets)."""
        self.available: bool | None = None
        """Whether the last listing worked (None before the first)."""
        self._followers: dict[str, _Follower] = {}
        self._batchers: dict[str, LineBatcher] = {}
        self._trigger = asyncio.Event()
        self._stop = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self.settle = SETTLE
        self._acting: set[str] = set()
        """Containers a hub action is stopping or restarting now: their `die` is no news."""
        self._settling: set[asyncio.Task[None]] = set()

    # --- public API ------------------------------------------------------------

    def report_now(self) -> None:
        """Send a full report as soon as possible (the session just connected)."""
        self._trigger.set()

    async def run(self) -> None:
        """Report and follow until cancelled; then stop following."""
        self._loop = asyncio.get_running_loop()
        self._stop.clear()
        threading.Thread(target=self._watch_events, name="docker events", daemon=True).start()
        try:
            while True:
                self._trigger.clear()
                if not self._acting:  # mid-restart, a container looks dead; report_now() follows the action
                    await self.full_report()
                await self._triggered_or(self.full_interval)
        finally:
            self.close()

    async def _triggered_or(self, timeout: float) -> None:
        """Until `report_now()` or `timeout` seconds. Not `wait_for`: before Python 3.12 it swallows a
        cancel that arrives as the trigger fires, and the watcher would never stop."""
        waiter = asyncio.ensure_future(self._trigger.wait())
        try:
            await asyncio.wait({waiter}, timeout=timeout)
        finally:
            waiter.cancel()

    def close(self) -> None:
        """Stop the event thread and every follower; send the lines buffered so far."""
        self._stop.set()
        for follower in list(self._followers.values()):
            follower.stop.set()
            follower.drain()
        self._followers.clear()
        for batch in self._batchers.values():
            batch.flush()

    async def full_report(self) -> bool:
        """List every gamenode container and report them all (`full=True`); False when Docker did not answer."""
        try:
            infos = await asyncio.to_thread(self.runtime.list_managed, True)
        except Exception as exc:  # no Docker here (or not now): stay quiet, try again later
            self._set_available(False, exc)
            return False
        self._set_available(True)
        mine = [info for info in infos if info.instance_id]
        self.secrets.instances_seen(info.instance_id for info in mine)
        self._sink.emit_instance_report(
            pb.InstanceReport(instances=[instance_status(i, self.secrets) for i in mine], full=True))
        now = time.time()
        for info in mine:
            if info.state == "running":
                self.follow(info, since=now)
        return True

    def follow(self, info: ContainerInfo, since: float | None) -> None:
        """Follow a running container's output from `since` (UNIX time; None: all of it), unless already."""
        if info.id in self._followers or not info.instance_id or self._stop.is_set():
            return
        follower = self._followers[info.id] = _Follower(self, info, since)
        follower.thread.start()

    def batcher(self, instance_id: str) -> LineBatcher:
        """The log batcher of one instance (created on first use)."""
        batch = self._batchers.get(instance_id)
        if batch is None:
            batch = self._batchers[instance_id] = LineBatcher(
                f"instance:{instance_id}", self._sink.emit_log, max_lines=self.max_lines, max_delay=self.max_delay)
        return batch

    def followed_to_the_end(self, follower: _Follower) -> None:
        """On the loop: a container's output ended (it stopped, or the stream broke)."""
        follower.drain()
        if self._followers.get(follower.info.id) is follower:
            del self._followers[follower.info.id]
        self.batcher(follower.info.instance_id).flush()

    def call_soon(self, callback: Callable[..., object], *args: object) -> None:
        """Run `callback(*args)` on the event loop (from any thread); dropped once the loop is gone."""
        if self._loop is None:
            return
        with contextlib.suppress(RuntimeError):
            self._loop.call_soon_threadsafe(callback, *args)

    @property
    def following(self) -> list[str]:
        """Ids of the containers whose output is followed now."""
        return list(self._followers)

    # --- docker events ---------------------------------------------------------

    def _watch_events(self) -> None:
        try:
            self.runtime.watch_events(lambda action, info: self.call_soon(self.on_event, action, info), self._stop)
        except Exception as exc:  # a runtime without events: full reports still go out
            self.log.debug("not watching docker events: %s", exc)

    def on_event(self, action: str, info: ContainerInfo) -> None:
        """On the loop: one docker event of a gamenode container."""
        if not info.instance_id or action not in REPORTED_EVENTS:
            return
        if action in SETTLING_EVENTS:
            if info.id not in self._acting:
                task = asyncio.ensure_future(self._report_settled(info))
                self._settling.add(task)
                task.add_done_callback(self._settling.discard)
            return
        self._sink.emit_instance_report(pb.InstanceReport(instances=[instance_status(info, self.secrets)], full=False))
        if action == "start":
            started = info.started_at.timestamp() if info.started_at is not None else time.time()
            self.follow(info, since=started)
        elif action == "destroy" and info.id in self._followers:
            self._followers[info.id].stop.set()

    async def _report_settled(self, info: ContainerInfo) -> None:
        """A container died: report how it is `settle` seconds later (a restart policy may have started it again)."""
        await asyncio.sleep(self.settle)
        if info.id in self._acting:
            return
        try:
            now = await asyncio.to_thread(self.runtime.inspect, info.id)
        except Exception as exc:
            self.log.debug("inspecting %s after it died: %s", info.name, exc)
            now = None
        self._sink.emit_instance_report(
            pb.InstanceReport(instances=[instance_status(now or info, self.secrets)], full=False))

    def _set_available(self, available: bool, exc: BaseException | None = None) -> None:
        if available == self.available:
            return
        if not available:
            self.log.info("instances: docker does not answer (%s); no instance reports until it does", exc)
        elif self.available is False:
            self.log.info("instances: docker answers again")
        self.available = available

    # --- the hub's container actions --------------------------------------------

    async def container_action(self, action: pb.ContainerAction) -> CommandOutcome:
        """STOP, RESTART, REMOVE or LOGS on an instance's container; the outcome says what went wrong."""
        what = _Action.Action.Name(action.action).removeprefix("ACTION_").lower()
        if action.action == _Action.ACTION_UNSPECIFIED:
            return CommandOutcome(False, "container action: no action given")
        try:
            info = await asyncio.to_thread(self._resolve, action.instance_id, action.container_id)
            if info is None:
                return self._missing(action, what)
            self._acting.add(info.id)
            try:
                outcome = await self._act(action, info)
            finally:
                self._acting.discard(info.id)
        except Exception as exc:  # StepFailed with the daemon's reason, or no Docker at all
            message = getattr(exc, "message", None) or f"{type(exc).__name__}: {exc}"
            return CommandOutcome(False, f"{what} of instance {action.instance_id or action.container_id}: {message}")
        self.report_now()
        return outcome

    def _resolve(self, instance_id: str, container_id: str) -> ContainerInfo | None:
        if container_id:
            info = self.runtime.inspect(container_id)
            if info is not None and (not instance_id or info.instance_id == instance_id):
                return info
        if not instance_id:
            return None
        mine = [info for info in self.runtime.list_managed(True) if info.instance_id == instance_id]
        mine.sort(key=lambda info: info.state != "running")  # a running one first
        return mine[0] if mine else None

    def _missing(self, action: pb.ContainerAction, what: str) -> CommandOutcome:
        who = action.instance_id or action.container_id
        if action.action == _Action.ACTION_REMOVE:
            self._release(action.instance_id)
            return CommandOutcome(True, f"instance {who} has no container (already removed)")
        return CommandOutcome(False, f"{what}: instance {who} has no container on this node")

    async def _act(self, action: pb.ContainerAction, info: ContainerInfo) -> CommandOutcome:
        kind = action.action
        if kind == _Action.ACTION_STOP:
            await asyncio.to_thread(self.runtime.stop, info.id, self.grace)
        elif kind == _Action.ACTION_RESTART:
            await asyncio.to_thread(self.runtime.restart, info.id, self.grace)
        elif kind == _Action.ACTION_REMOVE:
            await asyncio.to_thread(self.runtime.remove, info.id, True)
            self._release(info.instance_id or action.instance_id)
        elif kind == _Action.ACTION_LOGS:
            await self._send_tail(info, action.tail or DEFAULT_TAIL)
        else:
            return CommandOutcome(False, f"unknown container action {kind}")
        return CommandOutcome(True)

    async def _send_tail(self, info: ContainerInfo, tail: int) -> None:
        def read() -> list[tuple[str, str]]:
            return list(self.runtime.stream_logs(info.id, None, threading.Event(), follow=False, tail=tail))

        redact = self.secrets.redact
        lines = [log_line(redact(text)[:MAX_LINE], "warning" if stream == "stderr" else "info", stream)
                 for stream, text in await asyncio.to_thread(read)]
        source = f"instance:{info.instance_id}"
        for start in range(0, len(lines), self.max_lines):
            self._sink.emit_log(pb.LogChunk(source=source, lines=lines[start:start + self.max_lines]))

    def _release(self, instance_id: str) -> None:
        if self.ports is None or not instance_id:
            return
        try:
            self.ports.release(instance_id)
        except Exception as exc:
            self.log.warning("releasing the ports of instance %s failed: %s", instance_id, exc)
