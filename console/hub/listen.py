"""Listen addresses: binding them, and the error when that is not possible.

The gRPC listen setting is a comma-separated list: `HOST:PORT` (TCP) and
`unix:PATH` (a unix socket, mode 0600: only this user's consoles reach it).
"""

from __future__ import annotations

import contextlib
import errno
import os
import socket
import stat
from pathlib import Path

from console.errors import Unavailable
from console.settings import UNIX_PREFIX, parse_listen, split_listen

__all__ = [
    "UNIX_PATH_MAX",
    "ListenError",
    "bind",
    "check_bindable",
    "host_port",
    "prepare_unix",
    "split_listen",
    "unix_path",
]

UNIX_PATH_MAX = 107
"""Bytes a unix socket path may have (sun_path less its NUL)."""


class ListenError(Unavailable):
    """The address to serve on cannot be bound (in use, not local, no permission)."""


def host_port(host: str, port: int) -> str:
    """`HOST:PORT`, with an IPv6 host in brackets."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def bind(listen: str, what: str = "listen address", backlog: int = 1024) -> socket.socket:
    """A listening, non-blocking TCP socket on `listen` (`HOST:PORT`; port 0 picks a free one)."""
    host, port = parse_listen(listen, what)
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise ListenError(f"cannot listen on {listen}: {exc.strerror}") from None
    sock.listen(backlog)
    sock.setblocking(False)
    return sock


def check_bindable(listen: str, what: str = "listen address") -> tuple[str, int]:
    """(host, port) of `listen` once a plain socket could bind it (then closed): for servers that
    bind by themselves and say too little when they cannot (gRPC)."""
    host, port = parse_listen(listen, what)
    bind(listen, what).close()
    return host, port


def unix_path(address: str) -> Path | None:
    """The socket path of a `unix:PATH` address; None for a TCP address."""
    return Path(address.removeprefix(UNIX_PREFIX)) if address.startswith(UNIX_PREFIX) else None


def prepare_unix(path: Path) -> None:
    """Make `path` bindable: its directory exists, and a stale socket (nobody listening) is removed.

    ListenError when the path is too long, is not a socket, or a live server listens on it.
    """
    if len(os.fsencode(path)) > UNIX_PATH_MAX:
        raise ListenError(f"cannot listen on unix:{path}: the path is longer than {UNIX_PATH_MAX} bytes")
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        mode = path.lstat().st_mode
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(mode):
        raise ListenError(f"cannot listen on unix:{path}: a file that is not a socket is in the way")
    if _listening(path):
        raise ListenError(f"cannot listen on unix:{path}: another server listens there")
    with contextlib.suppress(FileNotFoundError):
        path.unlink()


def _listening(path: Path) -> bool:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
        try:
            probe.connect(str(path))
        except OSError as exc:
            if exc.errno in (errno.ECONNREFUSED, errno.ENOENT):
                return False
            raise ListenError(f"cannot listen on unix:{path}: {exc.strerror}") from None
    return True
