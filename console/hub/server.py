"""The hub process: one asyncio program serving the REST API (and, from the
hub/agent issue on, gRPC) over the stores of one data directory.

`Hub.run()` opens and locks the data directory, binds, serves until `stop()`
(SIGTERM/SIGINT call it), then closes the stores and releases the lock.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import socket
from collections.abc import Callable, Generator

import uvicorn

from console.errors import Unavailable
from console.hub.app import create_app
from console.service import Services
from console.settings import HubSettings, parse_listen
from console.store import Stores

__all__ = ["Hub", "ListenError"]

log = logging.getLogger(__name__)


class ListenError(Unavailable):
    """The address to serve on cannot be bound (in use, not local, no permission)."""


class _Server(uvicorn.Server):
    """uvicorn inside the hub's loop: the hub, not uvicorn, owns the signals."""

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield


class Hub:
    def __init__(self, settings: HubSettings) -> None:
        self.settings = settings
        self.stores: Stores | None = None
        self.http_url = ""
        self._server: _Server | None = None
        self._stopping = asyncio.Event()

    async def run(self, on_ready: Callable[[Hub], None] | None = None) -> None:
        self.stores = Stores.open(self.settings.data_dir)
        try:
            services = Services.over(self.stores)
            sock = _bind(self.settings.http_listen)
            host, port = sock.getsockname()[:2]
            self.http_url = f"http://{_url_host(host)}:{port}"
            config = uvicorn.Config(
                create_app(services), log_level="warning", access_log=False, lifespan="off",
                timeout_graceful_shutdown=5,
            )
            self._server = _Server(config)
            self._install_signals()
            serving = asyncio.create_task(self._server.serve(sockets=[sock]))
            while not self._server.started and not serving.done():
                await asyncio.sleep(0.01)
            if serving.done():
                serving.result()  # raises what stopped uvicorn from starting
                return
            log.debug("REST API on %s, data in %s", self.http_url, self.settings.data_dir)
            if on_ready:
                on_ready(self)
            stop = asyncio.create_task(self._stopping.wait())
            await asyncio.wait({serving, stop}, return_when=asyncio.FIRST_COMPLETED)
            self._server.should_exit = True
            await serving
            stop.cancel()
        finally:
            self.stores.close()
            self.stores = None

    def stop(self) -> None:
        self._stopping.set()

    def _install_signals(self) -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.add_signal_handler(sig, self.stop)


def _bind(listen: str) -> socket.socket:
    host, port = parse_listen(listen, "http listen address")
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise ListenError(f"cannot listen on {listen}: {exc.strerror}") from None
    sock.listen(1024)
    sock.setblocking(False)
    return sock


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host
