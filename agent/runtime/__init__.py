"""Container runtimes behind a small seam (`ContainerRuntime`); Docker is the one implemented."""

from __future__ import annotations

from agent.runtime.docker import INSTANCE_LABEL, ContainerRuntime, DockerRuntime

__all__ = ["INSTANCE_LABEL", "ContainerRuntime", "DockerRuntime"]
