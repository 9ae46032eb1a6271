"""A fake rollout runner and bundle: what `bootstrap.Rollout` would report, chosen by the test."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from console.service.rollout_runner import RolloutPlan

__all__ = ["FakeBundle", "FakeReport", "FakeRunner", "FakeStep", "fake_bundle"]


@dataclass
class FakeStep:
    name: str
    state: str = "pending"
    started_at: datetime | None = None
    finished_at: datetime | None = None
    message: str = ""


@dataclass
class FakeReport:
    node_id: str
    host: str
    from_version: str | None = None
    to_version: str | None = None
    result: str | None = None
    error: str = ""
    steps: list[FakeStep] = field(default_factory=list)
    duration: float = 0.0


@dataclass(frozen=True)
class FakeBundle:
    version: str = "9.9.9"


def fake_bundle(cache: Path, archive: str | None, wheelhouse: str | None) -> FakeBundle:
    return FakeBundle()


class FakeRunner:
    """Reports every host `running` on connect, then waits for `release`, then ends each host with `results`."""

    def __init__(self, results: dict[str, str] | None = None, hold: bool = False) -> None:
        self.results = results or {}
        self.plans: list[RolloutPlan] = []
        self.release = asyncio.Event()
        self.started = asyncio.Event()
        if not hold:
            self.release.set()

    async def __call__(self, plan: RolloutPlan) -> Sequence[Any]:
        self.plans.append(plan)
        reports = [FakeReport(n.id, f"{n.ssh.host}:{n.ssh.port}" if n.ssh else "", steps=[FakeStep("connect")])
                   for n in plan.nodes]
        for report in reports:
            report.steps[0].state = "running"
            report.steps[0].started_at = datetime.now(UTC)
            plan.on_change(report)
        self.started.set()
        await self.release.wait()
        for report in reports:
            result = self.results.get(report.node_id, "installed")
            report.steps[0].state = "failed" if result == "failed" else "succeeded"
            report.result, report.to_version, report.duration = result, "9.9.9", 1.5
            report.error = "boom" if result == "failed" else ""
            plan.on_change(report)
        return reports
