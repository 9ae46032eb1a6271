"""Listen addresses: binding them, and the error when that is not possible."""

from __future__ import annotations

import socket

from console.errors import Unavailable
from console.settings import parse_listen

__all__ = ["ListenError", "bind", "check_bindable", "host_port"]


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
