"""Agent rollout over SSH: bundles, host-key checks, the per-host steps and the orchestrator.

Runs on the hub's host (the hub's RolloutService and `gamenode rollout` drive it);
nothing here is shipped to nodes. Import what you need from here:

    bundle = build_bundle(cache)                       # or load_bundle(archive)
    rollout = Rollout(targets, RolloutOptions(bundle=bundle, known_hosts=path), verify=..., on_change=...)
    reports = await rollout.run()
    print(summary_table(reports))
"""

from __future__ import annotations

from bootstrap.bundle import AGENT_REQUIREMENTS, Bundle, build_bundle, load_bundle
from bootstrap.errors import BootstrapError, HostKeyError
from bootstrap.known_hosts import KnownHosts, fingerprint
from bootstrap.report import summary_table
from bootstrap.rollout import (
    INSTALL_STEPS,
    UNINSTALL_STEPS,
    Action,
    HostReport,
    HostResult,
    HostTarget,
    Rollout,
    RolloutOptions,
    StepReport,
    StepState,
    TokenProvider,
)
from bootstrap.ssh import HostConnection, connect, scan_host_key
from bootstrap.steps import Facts, HostOps, RemoteHost, unit_file

__all__ = [
    "AGENT_REQUIREMENTS",
    "INSTALL_STEPS",
    "UNINSTALL_STEPS",
    "Action",
    "BootstrapError",
    "Bundle",
    "Facts",
    "HostConnection",
    "HostKeyError",
    "HostOps",
    "HostReport",
    "HostResult",
    "HostTarget",
    "KnownHosts",
    "RemoteHost",
    "Rollout",
    "RolloutOptions",
    "StepReport",
    "StepState",
    "TokenProvider",
    "build_bundle",
    "connect",
    "fingerprint",
    "load_bundle",
    "scan_host_key",
    "summary_table",
    "unit_file",
]
