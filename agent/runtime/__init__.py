"""Container runtimes behind a small seam (`ContainerRuntime`); Docker is the one implemented."""

from __future__ import annotations

from agent.runtime.docker import (
    INSTANCE_LABEL,
    MANAGED_LABEL,
    NODE_LABEL,
    RUN_LABEL,
    ContainerInfo,
    ContainerRuntime,
    DockerRuntime,
    PullResult,
    PullTally,
)

__all__ = [
    "INSTANCE_LABEL",
    "MANAGED_LABEL",
    "NODE_LABEL",
    "RUN_LABEL",
    "ContainerInfo",
    "ContainerRuntime",
    "DockerRuntime",
    "PullResult",
    "PullTally",
]
