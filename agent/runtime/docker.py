"""The Docker adapter: how many game instances run here, and whether Docker is there at all.

The docker SDK is imported and its client created lazily, on the first call,
and calls block: run them in a thread (`asyncio.to_thread`), at most once per
heartbeat. Without Docker the node still reports: `count_instances()` is None
and `status` says why ("unavailable: ...").
"""

from __future__ import annotations

import logging
import os
from typing import Any, Protocol

__all__ = ["DEFAULT_SOCKET", "INSTANCE_LABEL", "ContainerRuntime", "DockerRuntime"]

log = logging.getLogger(__name__)

INSTANCE_LABEL = "gamenode.instance"
"""Every container gamenode starts carries this label (its value: the instance id)."""
DEFAULT_SOCKET = "/var/run/docker.sock"


class ContainerRuntime(Protocol):
    @property
    def status(self) -> str:
        """"available", or "unavailable: <reason>"."""
        ...

    def count_instances(self) -> int | None:
        """Running gamenode containers; None when the runtime is unavailable (blocking)."""
        ...

    def close(self) -> None: ...


class DockerRuntime:
    """Docker Engine via the docker SDK (`DOCKER_HOST` or the default socket)."""

    def __init__(self, timeout: float = 3.0, socket_path: str = DEFAULT_SOCKET) -> None:
        self.timeout = timeout
        self.socket_path = socket_path
        self._client: Any = None
        self._status = "unavailable: not checked yet"

    @property
    def status(self) -> str:
        return self._status

    def count_instances(self) -> int | None:
        try:
            client = self._connect()
            running = client.containers.list(filters={"label": INSTANCE_LABEL}, sparse=True)
        except Exception as exc:  # DockerException, requests' ConnectionError, a missing SDK, ...
            self._unavailable(_reason(exc))
            self.close()
            return None
        self._set_status("available")
        return len(running)

    def close(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            try:
                client.close()
            except Exception as exc:
                log.debug("closing the docker client: %s", exc)

    def _connect(self) -> Any:
        if self._client is not None:
            return self._client
        socket_path = _unix_socket(os.environ.get("DOCKER_HOST", ""), self.socket_path)
        if socket_path and not os.path.exists(socket_path):
            raise FileNotFoundError(f"no Docker socket at {socket_path}")
        import docker  # type: ignore[import-untyped, unused-ignore]  # lazily: the SDK costs memory

        self._client = docker.from_env(timeout=self.timeout)
        return self._client

    def _unavailable(self, reason: str) -> None:
        self._set_status(f"unavailable: {reason}")

    def _set_status(self, status: str) -> None:
        if status != self._status:
            quiet = status == "available" or self._status.endswith("not checked yet")
            log.log(logging.INFO if quiet else logging.WARNING, "container runtime: %s", status)
        self._status = status


def _unix_socket(docker_host: str, default: str) -> str:
    """The socket file Docker would use ("" for a TCP or SSH host): checked before importing the SDK."""
    if not docker_host:
        return default
    return docker_host.removeprefix("unix://") if docker_host.startswith("unix://") else ""


def _reason(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return text if len(text) <= 200 else text[:197] + "..."
