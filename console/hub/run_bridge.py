"""Between the run and instance services and the agents' streams.

`RunBridge` is the `Dispatcher` the `RunService` sends through: RunPipeline
and CancelRun become commands on the node's stream (`SessionRegistry`), with
ids derived from the run id (`run:<id>`, `cancel:<id>`), so a command sent
again after a hub restart is one the agent knows (it answers with its first
outcome). Commands wait in the registry while the node is away and are resent
on every reconnect until acked.

The other way, what agents report that writes records — pipeline events,
command acks for runs, container reports — is applied on one writer thread,
in arrival order, so the event loop never waits on a disk. `apply_*` answers
a future that is done once the change is written; the agent stream acks an
event only after that (`AgentServicer`), so an event is never acked and then
lost in a crash.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from console.errors import NotFound, Unavailable
from console.hub.containers import container_reports
from console.hub.convert import run_event_from_pb
from console.hub.sessions import SessionRegistry
from console.models import PipelineRun
from console.service import Services
from console.service.instances import ContainerReport
from proto import gamenode_pb2 as pb

__all__ = ["RunBridge", "cancel_command_id", "run_command_id"]

log = logging.getLogger(__name__)

AckHandler = Callable[[str, bool, str], Any]


def run_command_id(run_id: str) -> str:
    return f"run:{run_id}"


def cancel_command_id(run_id: str) -> str:
    return f"cancel:{run_id}"


class RunBridge:
    """The hub's `Dispatcher` for runs, and the one writer of what agents report about runs and containers."""

    def __init__(self, services: Services, registry: SessionRegistry) -> None:
        self.services = services
        self.registry = registry
        self.loop = registry.loop
        self._writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="gamenode-runs")
        self._closed = False

    # --- Dispatcher (any thread) ----------------------------------------------

    def connected(self, node_id: str) -> bool:
        return self.registry.connected(node_id)

    def run_pipeline(self, run: PipelineRun, params: dict[str, Any]) -> None:
        command = pb.Command(command_id=run_command_id(run.id), run_pipeline=pb.RunPipeline(
            run_id=run.id, pipeline_yaml=run.pipeline_yaml, instance_id=run.instance_id or "",
        ))
        command.run_pipeline.params.update(params)
        self._on_loop(self._send, run.node_id, run.id, command, self.services.runs.command_acked)

    def cancel_run(self, run: PipelineRun, reason: str) -> None:
        command = pb.Command(command_id=cancel_command_id(run.id),
                             cancel_run=pb.CancelRun(run_id=run.id, reason=reason))
        self._on_loop(self._send, run.node_id, run.id, command, self.services.runs.cancel_acked)

    # --- what agents report (on the loop) ----------------------------------------

    def apply_event(self, node_id: str, event: pb.PipelineEvent) -> asyncio.Future[Any]:
        """Apply a pipeline event on the writer thread; done once written."""
        return self._write(self.services.runs.apply_event, node_id, run_event_from_pb(event))

    def apply_report(self, node_id: str, report: pb.InstanceReport) -> asyncio.Future[Any]:
        """Reconcile the node's instances with its agent's container report on the writer thread."""
        return self._write(self._reconcile, node_id, container_reports(report), report.full)

    def _reconcile(self, node_id: str, statuses: list[ContainerReport], full: bool) -> None:
        """Reconcile, leaving alone the instances a run is working on."""
        busy = self.services.runs.busy_instances(node_id)
        self.services.instances.reconcile(node_id, statuses, full, busy=busy)

    async def drain(self) -> None:
        """Wait until everything queued for the writer so far is written."""
        if not self._closed:
            await self.loop.run_in_executor(self._writer, lambda: None)

    async def close(self) -> None:
        if self._closed:
            return
        await self.drain()
        self._closed = True
        self._writer.shutdown(wait=True)

    # --- internals ---------------------------------------------------------------

    def _on_loop(self, fn: Callable[..., None], *args: Any) -> None:
        try:
            on_loop = asyncio.get_running_loop() is self.loop
        except RuntimeError:
            on_loop = False
        if on_loop:
            fn(*args)
        else:
            self.loop.call_soon_threadsafe(fn, *args)

    def _send(self, node_id: str, run_id: str, command: pb.Command, on_ack: AckHandler) -> None:
        if any(m.command.command_id == command.command_id for m in self.registry.pending_commands(node_id)):
            return  # still waiting for its ack from an earlier send
        try:
            future = self.registry.send_command(node_id, command)
        except Exception as exc:  # too many commands waiting for that node
            log.error("run %s: cannot send %s to node %s: %s", run_id, command.WhichOneof("action"), node_id, exc)
            return
        future.add_done_callback(lambda done: self._acked(done, run_id, on_ack))

    def _acked(self, done: asyncio.Future[pb.CommandAck], run_id: str, on_ack: AckHandler) -> None:
        if done.cancelled():
            return
        exc = done.exception()
        if isinstance(exc, Unavailable):  # the hub is stopping: sent again by `RunService.resume` at the next start
            return
        if isinstance(exc, NotFound):
            self._write(self.services.runs.fail, run_id, "its node was deleted")
        elif exc is not None:
            log.error("run %s: command failed: %s", run_id, exc)
        else:
            ack = done.result()
            self._write(on_ack, run_id, ack.ok, ack.error)

    def _write(self, fn: Callable[..., Any], *args: Any) -> asyncio.Future[Any]:
        if self._closed:  # the hub is stopping: never done, so never acked; the agent sends it again
            log.debug("hub stopping: %s not applied", getattr(fn, "__name__", fn))
            return self.loop.create_future()
        future = self.loop.run_in_executor(self._writer, fn, *args)
        future.add_done_callback(_log_failure)
        return future


def _log_failure(future: asyncio.Future[Any]) -> None:
    if future.cancelled():
        return
    exc = future.exception()
    if exc is not None:
        log.error("applying an agent's report failed: %s", exc, exc_info=exc)
