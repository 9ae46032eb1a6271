"""The rollout: install, upgrade, roll back or remove the agent on many hosts at once.

`Rollout.run` works through `targets` with at most `parallel` hosts at a time,
the first `canary` of them first (when one of those fails, the rest are not
started). Per host (step names as reported):

    install:   connect → preflight → upload → install → configure → switch → start → verify [→ rollback]
    uninstall: connect → stop → remove → revoke

`switch` is the commit point: a host cancelled before it keeps its old version
(a new version dir may sit unused beside it); once `switch` starts, it and
`start` finish even when cancelled, so the host runs the new version.
A host already on this exact bundle, running, with its config unchanged is
"unchanged" after preflight. A new version that does not come online within
`timeout` is switched back to the previous one ("rolled_back"). Every step has a
timeout, so a dead host fails alone. Each change of a report goes to `on_change`.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Any, TypeVar

from bootstrap.bundle import Bundle
from bootstrap.errors import BootstrapError
from bootstrap.report import summary_table
from bootstrap.ssh import host_logger
from bootstrap.steps import Facts, HostOps, RemoteHost
from console.errors import GamenodeError
from console.models import SshAccess

__all__ = [
    "INSTALL_STEPS",
    "UNINSTALL_STEPS",
    "Action",
    "HostReport",
    "HostResult",
    "HostTarget",
    "OpsFactory",
    "Rollout",
    "RolloutOptions",
    "StepReport",
    "StepState",
    "TokenProvider",
    "summary_table",
]

T = TypeVar("T")
TokenProvider = Callable[[str], Awaitable[str]] | str
"""The node's join token, or an async function of the node id that issues one (called only for a host whose
agent has no token or no certificate yet)."""

INSTALL_STEPS = ("connect", "preflight", "upload", "install", "configure", "switch", "start", "verify", "rollback")
UNINSTALL_STEPS = ("connect", "stop", "remove", "revoke")


class Action(StrEnum):
    INSTALL = "install"
    """Install, or upgrade to the bundle's version."""
    UNINSTALL = "uninstall"


class StepState(StrEnum):
    PENDING = "pending"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    SKIPPED = "skipped"


class HostResult(StrEnum):
    INSTALLED = "installed"
    UPGRADED = "upgraded"
    UNCHANGED = "unchanged"
    ROLLED_BACK = "rolled_back"
    REMOVED = "removed"
    FAILED = "failed"
    CANCELLED = "cancelled"


@dataclass
class RolloutOptions:
    action: Action = Action.INSTALL
    parallel: int = 10
    canary: int = 0
    timeout: float = 120
    """Seconds a new agent has to come online (verify)."""
    connect_timeout: float = 10
    trust_new_host_keys: bool = False
    known_hosts: Path = Path("known_hosts")
    bundle: Bundle | None = None
    """Required for install."""
    step_timeout: float = 120
    """Seconds any other single step may take."""


@dataclass
class HostTarget:
    node_id: str
    ssh: SshAccess
    hub_address: str
    """`HOST:PORT` the agent dials."""
    token_provider: TokenProvider
    """The node's join token (it exchanges it for its certificate on first start), or how to issue one."""
    ca_pem: bytes | None = None
    """The hub CA's certificate (PEM), installed for the agent to pin; None: the hub is --insecure (plaintext)."""


@dataclass
class StepReport:
    name: str
    state: StepState = StepState.PENDING
    started_at: datetime | None = None
    finished_at: datetime | None = None
    message: str = ""

    @property
    def duration(self) -> float | None:
        if self.started_at is None or self.finished_at is None:
            return None
        return (self.finished_at - self.started_at).total_seconds()


@dataclass
class HostReport:
    node_id: str
    host: str
    """`host:port`."""
    from_version: str | None = None
    to_version: str | None = None
    """The version the host runs after the run (the target's on success; the old one when it failed before switch)."""
    result: HostResult | None = None
    """None while the host is pending or running."""
    error: str = ""
    steps: list[StepReport] = field(default_factory=list)
    duration: float = 0.0

    def step(self, name: str) -> StepReport:
        return next(s for s in self.steps if s.name == name)


OpsFactory = Callable[[HostTarget, RolloutOptions, Any], HostOps]
"""Makes the `HostOps` for a host: (target, options, per-host logger). Default: `RemoteHost` over SSH."""

Verify = Callable[[str, str, float], Awaitable[bool]]
_FAILED_CANARY = (HostResult.FAILED, HostResult.ROLLED_BACK, HostResult.CANCELLED)


class _HostRun:
    """One host's pass: its report, its ops, step bookkeeping."""

    def __init__(self, rollout: Rollout, target: HostTarget, report: HostReport) -> None:
        self.rollout, self.target, self.report = rollout, target, report
        self.log = host_logger(target.node_id)
        self.committed = False
        self.started = time.monotonic()

    def notify(self) -> None:
        self.report.duration = time.monotonic() - self.started
        if self.rollout.on_change is not None:
            self.rollout.on_change(self.report)

    def mark(self, name: str, state: StepState, message: str = "") -> None:
        step = self.report.step(name)
        now = datetime.now(UTC)
        if state is StepState.RUNNING:
            step.started_at = now
        elif step.started_at is not None:
            step.finished_at = now
        step.state, step.message = state, message
        self.notify()

    def skip(self, *names: str, message: str = "") -> None:
        for name in names:
            if self.report.step(name).state is StepState.PENDING:
                self.mark(name, StepState.SKIPPED, message)

    async def step(self, name: str, work: Callable[[], Awaitable[T]], timeout: float | None) -> T:
        self.mark(name, StepState.RUNNING)
        self.log.info("%s ...", name)
        try:
            async with asyncio.timeout(timeout):
                result = await work()
        except asyncio.CancelledError:
            self.mark(name, StepState.FAILED, "cancelled")
            raise
        except TimeoutError:
            self.mark(name, StepState.FAILED, f"timed out after {timeout:g} s")
            raise BootstrapError(f"{name}: timed out after {timeout:g} s") from None
        except GamenodeError as exc:
            self.mark(name, StepState.FAILED, exc.message)
            raise
        except Exception as exc:  # a bug or an unexpected library error: still only this host fails
            self.mark(name, StepState.FAILED, f"{type(exc).__name__}: {exc}")
            raise BootstrapError(f"{name}: {type(exc).__name__}: {exc}") from exc
        self.mark(name, StepState.SUCCEEDED, result if isinstance(result, str) else "")
        self.log.info("%s done", name)
        return result

    def finish(self, result: HostResult, error: str = "") -> None:
        self.report.result, self.report.error = result, error
        for step in self.report.steps:
            if step.state is StepState.PENDING:
                step.state = StepState.SKIPPED
        self.log.info("%s%s", result.value, f": {error}" if error else "")
        self.notify()


class Rollout:
    """Runs one action on many hosts; `reports` holds one live `HostReport` per target, in target order."""

    def __init__(self, targets: Sequence[HostTarget], options: RolloutOptions, *, verify: Verify,
                 on_change: Callable[[HostReport], None] | None = None,
                 revoke: Callable[[str], Awaitable[None]] | None = None, ops_factory: OpsFactory | None = None,
                 ) -> None:
        if options.action is Action.INSTALL and options.bundle is None:
            raise BootstrapError("install: no bundle given")
        self.targets = list(targets)
        self.options = options
        self.verify, self.on_change, self.revoke = verify, on_change, revoke
        self.ops_factory: OpsFactory = ops_factory or RemoteHost
        names = INSTALL_STEPS if options.action is Action.INSTALL else UNINSTALL_STEPS
        self.reports = [HostReport(t.node_id, f"{t.ssh.host}:{t.ssh.port}", steps=[StepReport(n) for n in names])
                        for t in self.targets]

    async def run(self) -> list[HostReport]:
        """Do it; the reports. Cancelling waits until every running host is on its old or its new version."""
        limit = asyncio.Semaphore(max(1, self.options.parallel))
        indexes = list(range(len(self.targets)))
        canary, rest = indexes[:max(0, self.options.canary)], indexes[max(0, self.options.canary):]
        try:
            await self._batch(canary, limit)
            failed = [self.reports[i].node_id for i in canary if self.reports[i].result in _FAILED_CANARY]
            if failed:
                self._not_started(rest, f"not started: canary {', '.join(failed)} failed")
                return self.reports
            await self._batch(rest, limit)
        except asyncio.CancelledError:
            self._not_started(indexes, "cancelled before it started")
            raise
        return self.reports

    def _not_started(self, indexes: Sequence[int], why: str) -> None:
        for i in indexes:
            report = self.reports[i]
            if report.result is None:
                report.result, report.error = HostResult.CANCELLED, why
                for step in report.steps:
                    step.state = StepState.SKIPPED if step.state is StepState.PENDING else step.state
                if self.on_change is not None:
                    self.on_change(report)

    async def _batch(self, indexes: Sequence[int], limit: asyncio.Semaphore) -> None:
        tasks = [asyncio.create_task(self._host(i, limit), name=f"rollout {self.targets[i].node_id}")
                 for i in indexes]
        if not tasks:
            return
        try:
            await asyncio.gather(*tasks)
        except asyncio.CancelledError:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            raise

    async def _host(self, index: int, limit: asyncio.Semaphore) -> None:
        async with limit:
            run = _HostRun(self, self.targets[index], self.reports[index])
            ops: HostOps | None = None
            try:
                ops = self.ops_factory(run.target, self.options, run.log)
                if self.options.action is Action.INSTALL:
                    await self._install(run, ops)
                else:
                    await self._uninstall(run, ops)
            except asyncio.CancelledError:
                self._cancelled(run)
                raise
            except GamenodeError as exc:
                run.finish(HostResult.FAILED, exc.message)
            finally:
                if ops is not None:
                    await _close(ops)

    def _cancelled(self, run: _HostRun) -> None:
        report = run.report
        if run.committed:
            report.to_version = self.options.bundle.version if self.options.bundle else None
            run.finish(HostResult.CANCELLED, f"cancelled after the switch: on {report.to_version} (not verified)")
        elif report.step("preflight").state is not StepState.SUCCEEDED:
            run.finish(HostResult.CANCELLED, "cancelled before any change")
        else:
            report.to_version = report.from_version
            run.finish(HostResult.CANCELLED, f"cancelled: still on {report.from_version or 'no agent'}")

    async def _install(self, run: _HostRun, ops: HostOps) -> None:
        bundle = self.options.bundle
        assert bundle is not None
        opts = self.options
        await run.step("connect", ops.connect, 2 * opts.connect_timeout)
        facts = await run.step("preflight", ops.preflight, opts.step_timeout)
        run.report.from_version = run.report.to_version = facts.version
        if facts.notes:
            run.report.step("preflight").message = "; ".join(facts.notes)
        ops.check(facts)
        if facts.version == bundle.version and facts.bundle_current and facts.running and facts.config_current:
            run.skip(*INSTALL_STEPS, message="already current")
            run.finish(HostResult.UNCHANGED)
            return
        await self._prepare(run, ops, facts)
        await self._commit(run, ops, facts)
        await self._verify(run, ops, facts)

    async def _prepare(self, run: _HostRun, ops: HostOps, facts: Facts) -> None:
        timeout = self.options.step_timeout
        if facts.bundle_uploaded or facts.bundle_installed:
            run.skip("upload", message="already there")
        else:
            await run.step("upload", ops.upload, timeout)
        if facts.bundle_installed:
            run.skip("install", message="already installed")
        else:
            await run.step("install", ops.install, timeout)
        if facts.config_current:
            run.skip("configure", message="unchanged")
        else:
            await run.step("configure", ops.configure, timeout)

    async def _commit(self, run: _HostRun, ops: HostOps, facts: Facts) -> None:
        """switch + start, shielded: once begun, they finish even when the host is cancelled."""
        async def commit() -> None:
            if facts.bundle_current:
                run.skip("switch", message="already current")
            else:
                await run.step("switch", ops.switch, self.options.step_timeout)
            run.committed = True
            await run.step("start", ops.start, self.options.step_timeout)

        task = asyncio.ensure_future(commit())
        try:
            await asyncio.shield(task)
        except asyncio.CancelledError:
            await asyncio.wait([task])
            raise

    async def _verify(self, run: _HostRun, ops: HostOps, facts: Facts) -> None:
        bundle = self.options.bundle
        assert bundle is not None
        run.report.to_version = bundle.version
        try:
            await run.step("verify", lambda: self._online(run.target.node_id, bundle.version),
                           self.options.timeout + 10)
        except GamenodeError as exc:
            await self._rollback(run, ops, facts, exc.message)
            return
        run.finish(HostResult.UPGRADED if facts.version not in (None, bundle.version) else HostResult.INSTALLED)

    async def _online(self, node_id: str, version: str) -> str:
        if not await self.verify(node_id, version, self.options.timeout):
            raise BootstrapError(f"the agent {version} did not come online within {self.options.timeout:g} s")
        return f"online on {version}"

    async def _rollback(self, run: _HostRun, ops: HostOps, facts: Facts, failed: str) -> None:
        """After a failed verify: back to the version before (and wait for it online), else stop a fresh agent."""
        old = facts.version
        if old is None:
            await run.step("rollback", _stopped(ops), self.options.step_timeout)
        if old is None or (self.options.bundle is not None and old == self.options.bundle.version):
            run.finish(HostResult.FAILED, f"{failed}; no previous version to go back to")
            return

        async def back() -> str:
            await ops.rollback()
            await self._online(run.target.node_id, old)
            return f"back on {old}, online"

        try:
            await run.step("rollback", back, self.options.step_timeout + self.options.timeout)
        except GamenodeError as exc:
            run.finish(HostResult.FAILED, f"{failed}; rollback to {old} failed: {exc.message}")
            return
        run.report.to_version = old
        run.finish(HostResult.ROLLED_BACK, f"{failed}; back on {old}")

    async def _uninstall(self, run: _HostRun, ops: HostOps) -> None:
        timeout = self.options.step_timeout
        await run.step("connect", ops.connect, 2 * self.options.connect_timeout)
        run.report.from_version = await run.step("stop", ops.stop, timeout)
        await run.step("remove", ops.remove, timeout)
        if self.revoke is not None:
            await run.step("revoke", lambda: _revoked(self.revoke, run.target.node_id), timeout)
        else:
            run.skip("revoke", message="no credential service")
        run.finish(HostResult.REMOVED)


def _stopped(ops: HostOps) -> Callable[[], Awaitable[str]]:
    async def stop() -> str:
        await ops.stop()
        return "no previous version: agent stopped"
    return stop


async def _revoked(revoke: Callable[[str], Awaitable[None]] | None, node_id: str) -> str:
    if revoke is not None:
        await revoke(node_id)
    return "credential revoked"


async def _close(ops: HostOps) -> None:
    try:
        await asyncio.shield(ops.close())
    except Exception:  # closing is best effort
        pass
