"""The hub process: one asyncio program serving gRPC (agents and consoles) and the
REST API over the stores of one data directory.

`Hub.run()` opens and locks the data directory, binds both addresses (the
REST one first), serves until `stop()` (SIGTERM/SIGINT call it), then stops
accepting calls, closes the agent streams and watches, stops uvicorn, flushes
the pending writes and closes the stores (leaving their index) and the lock.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import signal
import socket
from collections.abc import Callable, Generator

import uvicorn

from console.hub.listen import ListenError, bind, host_port
from console.hub.runtime import HubRuntime
from console.service import Services
from console.settings import HubSettings
from console.store import Stores

__all__ = ["Hub", "ListenError"]

log = logging.getLogger(__name__)


class _Server(uvicorn.Server):
    """uvicorn inside the hub's loop: the hub, not uvicorn, owns the signals."""

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield


class Hub:
    def __init__(self, settings: HubSettings, freeze_gc: bool = True) -> None:
        self.settings = settings
        self.freeze_gc = freeze_gc
        """`gc.freeze()` once serving: the objects of start-up are never scanned again (GC pauses)."""
        self.stores: Stores | None = None
        self.runtime: HubRuntime | None = None
        self.http_url = ""
        self.grpc_address = ""
        """The address agents join at (the first TCP one; TLS unless `insecure`)."""
        self.grpc_addresses: list[str] = []
        """Every gRPC address served, `grpc_address` first (then `unix:PATH` ones)."""
        self.agent_address = ""
        """Where agents stream: the mTLS listener (or, `insecure`, the gRPC address)."""
        self._server: _Server | None = None
        self._stopping = asyncio.Event()

    async def run(self, on_ready: Callable[[Hub], None] | None = None) -> None:
        self.stores = Stores.open(self.settings.data_dir)
        try:
            sock = bind(self.settings.http_listen, "http listen address")
            try:
                await self._serve(Services.over(self.stores), sock, on_ready)
            finally:
                sock.close()
        finally:
            self.stores.close()
            self.stores = None

    def stop(self) -> None:
        self._stopping.set()

    async def _serve(self, services: Services, sock: socket.socket, on_ready: Callable[[Hub], None] | None) -> None:
        runtime = self.runtime = HubRuntime(services, self.settings)
        try:
            self.grpc_address = await runtime.start(self.settings.grpc_listen)
            self.grpc_addresses = runtime.grpc_addresses
            self.agent_address = runtime.agent_address
            host, port = sock.getsockname()[:2]
            self.http_url = f"http://{host_port(host, port)}"
            config = uvicorn.Config(
                runtime.app(), log_level="warning", access_log=False, lifespan="off", timeout_graceful_shutdown=5,
            )
            self._server = _Server(config)
            self._install_signals()
            serving = asyncio.create_task(self._server.serve(sockets=[sock]))
            while not self._server.started and not serving.done():
                await asyncio.sleep(0.01)
            if serving.done():
                serving.result()  # raises what stopped uvicorn from starting
                return
            log.debug("REST API on %s, gRPC on %s, data in %s", self.http_url, self.grpc_address,
                      self.settings.data_dir)
            if on_ready:
                on_ready(self)
            if self.freeze_gc:
                gc.collect()
                gc.freeze()
            stop = asyncio.create_task(self._stopping.wait())
            await asyncio.wait({serving, stop}, return_when=asyncio.FIRST_COMPLETED)
            stop.cancel()
            await runtime.stop()  # agent streams first: uvicorn's shutdown waits for open requests (pings)
            self._server.should_exit = True
            await serving
        finally:
            await runtime.stop()
            self.runtime = None

    def _install_signals(self) -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.add_signal_handler(sig, self.stop)
