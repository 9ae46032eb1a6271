"""The bootstrap's errors: every one a `console.errors.GamenodeError`.

    Unavailable                code "unavailable"
    └── BootstrapError         a host step that could not be done (connect, a remote command, a guard)
        └── HostKeyError       a host key that is not known, or changed: the host is refused
"""

from __future__ import annotations

from typing import Literal

from console.errors import Unavailable

__all__ = ["BootstrapError", "HostKeyError"]


class BootstrapError(Unavailable):
    """A host the rollout could not reach or change; the message says what to do."""


class HostKeyError(BootstrapError):
    """The host presented a key the hub does not trust: `verdict` is "unknown" or "changed"."""

    def __init__(self, host: str, port: int, verdict: Literal["unknown", "changed"], fingerprint: str,
                 known: tuple[str, ...] = (), node: str | None = None) -> None:
        where = f"{host}:{port}"
        if verdict == "unknown":
            message = (f"host key of {where} is not known: {fingerprint} ; trust it with "
                       f"`gamenode ssh trust {node or 'NODE'}` or pass --trust-new-host-keys")
        else:
            message = (f"host key of {where} has CHANGED: it presents {fingerprint}, known_hosts has "
                       f"{', '.join(known)}; refused (a man-in-the-middle or a reinstalled host: check, then remove "
                       f"the old entry from known_hosts)")
        super().__init__(message)
        self.host = host
        self.port = port
        self.verdict = verdict
        self.fingerprint = fingerprint
        self.known = known
