"""The seam between the rollout service and the SSH bootstrap: one plan in, one report per host out.

`RolloutService` builds a `RolloutPlan` (plain values and the hub's callbacks) and hands it to a
`Runner`; `bootstrap_runner` turns it into `bootstrap.Rollout` and runs it. Tests give a fake
runner that calls `on_change` and answers reports of their choosing.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from console.models import GameNode, RolloutAction

__all__ = ["RolloutPlan", "Runner", "bootstrap_runner"]


@dataclass(frozen=True)
class RolloutPlan:
    """One rollout as the runner needs it."""

    rollout_id: str
    action: RolloutAction
    nodes: list[GameNode]
    """Each with `ssh`."""
    hub_address: str
    parallel: int
    canary: int
    timeout: float
    trust_new_host_keys: bool
    known_hosts: Path
    bundle: Any
    """A `bootstrap.bundle.Bundle` (None to uninstall)."""
    token: Callable[[str], Awaitable[str]]
    """A new join token for the node (revokes its earlier token and certificate: a running agent's stream is
    closed)."""
    verify: Callable[[str, str, float], Awaitable[bool]]
    """(node id, version, timeout): whether the node came online on that version in time."""
    revoke: Callable[[str], Awaitable[None]]
    on_change: Callable[[Any], None]
    """Called with a host's `HostReport` whenever it changes (on the loop)."""
    ca_pem: bytes | None = None
    """The hub CA's certificate the agents pin; None: the hub is --insecure (the agents get --insecure)."""


Runner = Callable[[RolloutPlan], Awaitable[Sequence[Any]]]
"""Runs a plan; the final `HostReport` of every host."""


async def bootstrap_runner(plan: RolloutPlan) -> Sequence[Any]:
    """Run the plan with `bootstrap.Rollout` (asyncssh)."""
    from bootstrap import Action, HostTarget, Rollout, RolloutOptions

    targets = [
        HostTarget(node_id=node.id, ssh=node.ssh, hub_address=plan.hub_address, token_provider=plan.token,
                   ca_pem=plan.ca_pem)
        for node in plan.nodes
        if node.ssh is not None
    ]
    options = RolloutOptions(
        action=Action(plan.action.value), parallel=plan.parallel, canary=plan.canary, timeout=plan.timeout,
        trust_new_host_keys=plan.trust_new_host_keys, known_hosts=plan.known_hosts, bundle=plan.bundle,
    )
    rollout = Rollout(targets, options, verify=plan.verify, on_change=plan.on_change, revoke=plan.revoke)
    reports: Sequence[Any] = await rollout.run()
    return reports
