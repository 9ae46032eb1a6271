"""The orchestrator with fake host steps: parallelism, canary, timeouts, cancel, no-op, rollback, uninstall."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import pytest

from bootstrap.bundle import Bundle
from bootstrap.errors import BootstrapError
from bootstrap.rollout import (
    Action,
    HostReport,
    HostResult,
    HostTarget,
    Rollout,
    RolloutOptions,
    StepState,
    summary_table,
)
from bootstrap.steps import Facts
from console.models import SshAccess

BUNDLE = Bundle("2.0.0", "3.11", "x86_64", Path("/nonexistent.tar.gz"), "f" * 64)


@dataclass
class Host:
    """A fake host's state and behaviour."""

    version: str | None = None
    running: bool = False
    delay: float = 0.0
    """Seconds every step takes."""
    hang_connect: bool = False
    fail_step: str | None = None
    crashes: bool = False
    """The new version never comes online."""
    calls: list[str] = field(default_factory=list)
    previous: str | None = None


class World:
    def __init__(self, hosts: dict[str, Host]) -> None:
        self.hosts = hosts
        self.active = 0
        self.peak = 0
        self.revoked: list[str] = []
        self.calls = 0
        self.on_call: Any = None

    def ops(self, target: HostTarget, options: RolloutOptions, log: Any) -> FakeOps:
        return FakeOps(self, self.hosts[target.node_id])

    async def verify(self, node_id: str, version: str, timeout: float) -> bool:
        host = self.hosts[node_id]
        return host.version == version and not (host.crashes and version == BUNDLE.version)

    async def revoke(self, node_id: str) -> None:
        self.revoked.append(node_id)


class FakeOps:
    def __init__(self, world: World, host: Host) -> None:
        self.world, self.host = world, host

    async def _do(self, name: str) -> None:
        self.host.calls.append(name)
        self.world.calls += 1
        if self.world.on_call is not None:
            self.world.on_call(self.world.calls)
        self.world.active += 1
        self.world.peak = max(self.world.peak, self.world.active)
        try:
            await asyncio.sleep(self.host.delay)
            if self.host.fail_step == name:
                raise BootstrapError(f"{name} broke")
        finally:
            self.world.active -= 1

    async def connect(self) -> str:
        if self.host.hang_connect:
            await asyncio.sleep(3600)
        await self._do("connect")
        return "ok"

    async def preflight(self) -> Facts:
        await self._do("preflight")
        same = self.host.version == BUNDLE.version
        return Facts(os="Linux", version=self.host.version, running=self.host.running, bundle_current=same,
                     bundle_installed=same, config_current=same)

    def check(self, facts: Facts) -> None:
        if self.host.fail_step == "check":
            raise BootstrapError("python 3.6: too old")

    async def upload(self) -> str:
        await self._do("upload")
        return ""

    async def install(self) -> str:
        await self._do("install")
        return ""

    async def configure(self) -> str:
        await self._do("configure")
        return ""

    async def switch(self) -> str:
        await self._do("switch")
        self.host.previous, self.host.version = self.host.version, BUNDLE.version
        return ""

    async def start(self) -> str:
        await self._do("start")
        self.host.running = True
        return ""

    async def rollback(self) -> str:
        await self._do("rollback")
        self.host.version = self.host.previous
        return self.host.version or ""

    async def stop(self) -> str | None:
        await self._do("stop")
        self.host.running = False
        return self.host.version

    async def remove(self) -> str:
        await self._do("remove")
        self.host.version = None
        return ""

    async def close(self) -> None:
        self.host.calls.append("close")


def _targets(names: list[str]) -> list[HostTarget]:
    return [HostTarget(n, SshAccess(host=f"{n}.test", prefix="/opt/gamenode"), "hub:7070", "tok") for n in names]


def _rollout(world: World, **options: Any) -> tuple[Rollout, list[HostReport]]:
    seen: list[HostReport] = []
    opts = RolloutOptions(bundle=BUNDLE, known_hosts=Path("/nonexistent"), **options)
    rollout = Rollout(_targets(list(world.hosts)), opts, verify=world.verify, revoke=world.revoke,
                      on_change=seen.append, ops_factory=world.ops)
    return rollout, seen


def _results(reports: list[HostReport]) -> dict[str, str]:
    return {r.node_id: str(r.result) for r in reports}


async def test_fresh_install_and_upgrade_and_noop() -> None:
    world = World({"a": Host(), "b": Host(version="1.0.0", running=True), "c": Host(version="2.0.0", running=True)})
    rollout, seen = _rollout(world)
    reports = await rollout.run()
    assert _results(reports) == {"a": "installed", "b": "upgraded", "c": "unchanged"}
    assert [(r.from_version, r.to_version) for r in reports] == [(None, "2.0.0"), ("1.0.0", "2.0.0"),
                                                                 ("2.0.0", "2.0.0")]
    assert world.hosts["c"].calls == ["connect", "preflight", "close"]
    assert all(s.state is StepState.SKIPPED for s in reports[2].steps[2:])
    assert reports[0].step("verify").state is StepState.SUCCEEDED
    assert reports[0].step("rollback").state is StepState.SKIPPED
    assert seen and all(r.result is not None for r in reports)
    again, _ = _rollout(world)
    assert set(_results(await again.run()).values()) == {"unchanged"}


async def test_parallelism_is_bounded() -> None:
    world = World({f"h{i}": Host(delay=0.01) for i in range(12)})
    rollout, _ = _rollout(world, parallel=3)
    reports = await rollout.run()
    assert world.peak == 3
    assert {r.result for r in reports} == {HostResult.INSTALLED}


async def test_failed_canary_stops_the_rest() -> None:
    world = World({"c1": Host(), "c2": Host(fail_step="install"), "r1": Host(), "r2": Host()})
    rollout, _ = _rollout(world, canary=2)
    reports = await rollout.run()
    assert _results(reports) == {"c1": "installed", "c2": "failed", "r1": "cancelled", "r2": "cancelled"}
    assert "canary c2 failed" in reports[2].error
    assert world.hosts["r1"].calls == []
    assert reports[1].step("install").state is StepState.FAILED
    assert reports[1].step("install").message == "install broke"


async def test_a_hanging_host_times_out_alone() -> None:
    world = World({"dead": Host(hang_connect=True), "ok1": Host(), "ok2": Host()})
    rollout, _ = _rollout(world, parallel=2, connect_timeout=0.05)
    rollout_task = asyncio.ensure_future(rollout.run())
    reports = await asyncio.wait_for(rollout_task, 30)
    assert _results(reports) == {"dead": "failed", "ok1": "installed", "ok2": "installed"}
    assert "timed out" in reports[0].error


async def test_a_failing_host_does_not_stop_others_and_check_refuses() -> None:
    world = World({"bad": Host(fail_step="check"), "ok": Host()})
    reports = await _rollout(world)[0].run()
    assert _results(reports) == {"bad": "failed", "ok": "installed"}
    assert reports[0].error == "python 3.6: too old"


async def test_crashing_upgrade_is_rolled_back() -> None:
    world = World({"up": Host(version="1.0.0", running=True, crashes=True), "fresh": Host(crashes=True)})
    reports = await _rollout(world, timeout=0.01)[0].run()
    assert _results(reports) == {"up": "rolled_back", "fresh": "failed"}
    assert world.hosts["up"].version == "1.0.0" and reports[0].to_version == "1.0.0"
    assert reports[0].step("verify").state is StepState.FAILED
    assert reports[0].step("rollback").state is StepState.SUCCEEDED
    assert "stop" in world.hosts["fresh"].calls and not world.hosts["fresh"].running
    assert "no previous version" in reports[1].error


@pytest.mark.parametrize("cancel_at", range(1, 34, 2))
async def test_cancel_leaves_every_host_old_or_new(cancel_at: int) -> None:
    """Cancel when the Nth step starts (4 hosts x 8 steps): whatever was running, each host is old or new."""
    world = World({f"h{i}": Host(version="1.0.0", running=True) for i in range(4)})
    rollout, _ = _rollout(world, parallel=2)
    task = asyncio.ensure_future(rollout.run())
    world.on_call = lambda n: task.cancel() if n == cancel_at else None
    try:
        await task
    except asyncio.CancelledError:
        pass
    for report, host in zip(rollout.reports, world.hosts.values(), strict=True):
        assert report.result is not None
        if "switch" in host.calls:  # committed: switched and started, all the way
            assert host.version == "2.0.0" and host.running and "start" in host.calls
            assert report.to_version == "2.0.0"
        else:
            assert host.version == "1.0.0" and report.result is HostResult.CANCELLED
            assert report.to_version == ("1.0.0" if report.step("preflight").state is StepState.SUCCEEDED else None)
        assert not host.calls or host.calls[-1] == "close"


async def test_uninstall_stops_removes_revokes() -> None:
    world = World({"a": Host(version="2.0.0", running=True), "b": Host(fail_step="remove")})
    reports = await _rollout(world, action=Action.UNINSTALL)[0].run()
    assert _results(reports) == {"a": "removed", "b": "failed"}
    assert [s.name for s in reports[0].steps] == ["connect", "stop", "remove", "revoke"]
    assert world.revoked == ["a"]
    assert reports[0].from_version == "2.0.0" and world.hosts["a"].version is None


async def test_install_needs_a_bundle() -> None:
    with pytest.raises(BootstrapError, match="no bundle"):
        Rollout(_targets(["a"]), RolloutOptions(), verify=World({}).verify)


def test_summary_table() -> None:
    reports = [HostReport("a", "a.test:22", None, "2.0.0", HostResult.INSTALLED, duration=1.25),
               HostReport("bb", "bb.test:2222", "1.0.0", "1.0.0", HostResult.FAILED, "exit 1: boom", duration=0.5),
               replace(HostReport("c", "c.test:22"), duration=0.1)]
    table = summary_table(reports)
    lines = table.splitlines()
    assert lines[0].split() == ["NODE", "HOST", "FROM", "TO", "RESULT", "TIME"]
    assert lines[1].split() == ["a", "a.test:22", "-", "2.0.0", "installed", "1.2s"]
    assert lines[2].split() == ["bb", "bb.test:2222", "1.0.0", "1.0.0", "failed", "0.5s"]
    assert lines[3].split()[4] == "running"
    assert "  bb: exit 1: boom" in lines
    assert lines[-1] == "3 hosts: 1 failed, 1 installed, 1 running"


async def test_a_refused_prefix_fails_only_that_host() -> None:
    """The real RemoteHost refuses the prefix before it connects anywhere."""
    target = HostTarget("bad", SshAccess(host="127.0.0.1", port=1, prefix="/usr"), "hub:7070", "tok")
    reports = await Rollout([target], RolloutOptions(bundle=BUNDLE), verify=World({}).verify).run()
    assert reports[0].result is HostResult.FAILED and "refused" in reports[0].error
