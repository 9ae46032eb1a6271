"""The hub's known_hosts: OpenSSH's file format, checked and appended to by the rollout.

Lines are `PATTERNS KEYTYPE BASE64 [COMMENT]`; PATTERNS is a comma list of
host names or addresses, `[host]:port` for a port other than 22, wildcards
`*`/`?`, `!negations`, or a hashed entry `|1|SALT|HMAC`. `@revoked` lines
refuse a key; `@cert-authority` lines are ignored (no host certificates here).
A host is "known" when one of its entries holds the presented key, "changed"
when it has entries but none with that key (or the key is revoked), else
"unknown". Fingerprints read like `ssh-keygen -l`: `SHA256:<base64 without =>`.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import fcntl
import hashlib
import hmac
import os
import re
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Protocol

from bootstrap.errors import HostKeyError

__all__ = ["HostKey", "KnownHosts", "Verdict", "fingerprint", "host_pattern"]

Verdict = Literal["known", "unknown", "changed"]


class HostKey(Protocol):
    """What the module needs of a public key (an `asyncssh.SSHKey` is one)."""

    @property
    def algorithm(self) -> bytes: ...

    @property
    def public_data(self) -> bytes: ...


def fingerprint(key: HostKey | bytes) -> str:
    """`SHA256:...` of a key (or of a raw public key blob), as `ssh-keygen -lf` prints it."""
    blob = key if isinstance(key, bytes) else key.public_data
    return "SHA256:" + base64.b64encode(hashlib.sha256(blob).digest()).decode().rstrip("=")


def host_pattern(host: str, port: int) -> str:
    """The name a host is filed under: `host`, or `[host]:port` when the port is not 22."""
    return host if port == 22 else f"[{host}]:{port}"


@dataclass(frozen=True, slots=True)
class _Entry:
    marker: str
    patterns: tuple[str, ...]
    keytype: str
    blob: bytes

    def matches(self, name: str) -> bool:
        hit = False
        for pattern in self.patterns:
            if pattern.startswith("|1|"):
                hit = hit or _hashed_match(pattern, name)
            elif pattern.startswith("!"):
                if _wildcard(name, pattern[1:]):
                    return False
            elif _wildcard(name, pattern):
                hit = True
        return hit


def _wildcard(name: str, pattern: str) -> bool:
    """OpenSSH patterns: only `*` and `?` are special (so `[host]:port` is literal); case-insensitive."""
    regex = "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern)
    return re.fullmatch(regex, name, re.IGNORECASE) is not None


def _hashed_match(pattern: str, name: str) -> bool:
    try:
        _, _, salt, digest = pattern.split("|", 3)
        mac = hmac.new(base64.b64decode(salt), name.encode(), hashlib.sha1).digest()
        return hmac.compare_digest(mac, base64.b64decode(digest))
    except (ValueError, binascii.Error):
        return False


def _parse_line(line: str) -> _Entry | None:
    fields = line.split()
    if not fields or fields[0].startswith("#"):
        return None
    marker = ""
    if fields[0].startswith("@"):
        marker, fields = fields[0], fields[1:]
    if len(fields) < 3:
        return None
    try:
        blob = base64.b64decode(fields[2], validate=True)
    except binascii.Error:
        return None
    return _Entry(marker, tuple(fields[0].split(",")), fields[1], blob)


class KnownHosts:
    """One known_hosts file; read on every check (it is small), appended to atomically."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)

    def _entries(self) -> Iterator[_Entry]:
        try:
            text = self.path.read_text(encoding="utf-8", errors="replace")
        except FileNotFoundError:
            return
        for line in text.splitlines():
            entry = _parse_line(line)
            if entry is not None and entry.marker in ("", "@revoked"):
                yield entry

    def _for_host(self, host: str, port: int) -> list[_Entry]:
        name = host_pattern(host, port)
        return [e for e in self._entries() if e.matches(name)]

    def keys_for(self, host: str, port: int) -> list[tuple[str, bytes]]:
        """The trusted (keytype, blob) pairs filed for the host (revoked ones left out)."""
        return [(e.keytype, e.blob) for e in self._for_host(host, port) if not e.marker]

    def check(self, host: str, port: int, key: HostKey) -> Verdict:
        """"known", "unknown" or "changed" (entries for the host, none with this key; or the key revoked)."""
        blob = key.public_data
        revoked = any(e.marker == "@revoked" and e.blob == blob for e in self._entries())
        entries = [e for e in self._for_host(host, port) if not e.marker]
        if revoked:
            return "changed"
        if any(e.blob == blob for e in entries):
            return "known"
        return "changed" if entries else "unknown"

    def known_fingerprints(self, host: str, port: int) -> tuple[str, ...]:
        """Fingerprints of the keys filed for the host (what a "changed" message shows)."""
        return tuple(fingerprint(blob) for _, blob in self.keys_for(host, port))

    def trust(self, host: str, port: int, key: HostKey, *, replace: bool = False) -> None:
        """Add the key for the host (a no-op when known). A changed key needs `replace=True`, which drops the old."""
        with self._locked():
            verdict = self.check(host, port, key)
            if verdict == "known":
                return
            if verdict == "changed" and not replace:
                raise HostKeyError(host, port, "changed", fingerprint(key), self.known_fingerprints(host, port))
            keep = self._lines_without(host, port) if verdict == "changed" else self._lines()
            line = f"{host_pattern(host, port)} {key.algorithm.decode()} {base64.b64encode(key.public_data).decode()}"
            self._write([*keep, line])

    def _lines(self) -> list[str]:
        try:
            return self.path.read_text(encoding="utf-8").splitlines()
        except FileNotFoundError:
            return []

    def _lines_without(self, host: str, port: int) -> list[str]:
        name = host_pattern(host, port)
        kept = []
        for line in self._lines():
            entry = _parse_line(line)
            if entry is None or entry.marker or not entry.matches(name):
                kept.append(line)
        return kept

    def _write(self, lines: list[str]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".known_hosts.", dir=self.path.parent)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as out:
                out.write("".join(line + "\n" for line in lines))
                out.flush()
                os.fsync(out.fileno())
            os.chmod(tmp, 0o600)
            os.replace(tmp, self.path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path.with_name(self.path.name + ".lock"), "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)
