"""The hub's live side over one set of services: sessions, live state, node feed, gRPC server.

`HubRuntime` wires what both the hub process and the tests need: the session
registry (agents), the live state (metrics), the node feed (watching
consoles), the run bridge (pipeline runs to and from agents), the log and
launch services, the REST app that shows them, and the grpc.aio server that serves
`AgentService` and `HubService`. Create it inside the running event loop
(grpc.aio servers belong to the loop they were made in).

At start the run service gets its dispatcher and its pipeline catalog
(`pipeline_dir`), and runs that no agent acked before the hub last stopped
are dispatched again (`RunService.resume`).

gRPC server options (DESIGN.md, "grpc.aio at scale"): no BDP probing, a deep
queue of pending streams for connect storms, client keepalive pings allowed
every 20 s without calls and never punished, gzip, no port sharing (a second
hub on the same port fails instead of splitting the agents).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from typing import Any

import grpc
from fastapi import FastAPI
from grpc import aio

from console.hub.agent_service import AgentServicer
from console.hub.app import VERSION, create_app
from console.hub.containers import RegistryContainers
from console.hub.hub_service import HubServicer
from console.hub.listen import ListenError, check_bindable, host_port, prepare_unix, split_listen, unix_path
from console.hub.live import LiveState
from console.hub.run_bridge import RunBridge
from console.hub.sessions import SessionRegistry
from console.hub.watch import NodeFeed
from console.service import PipelineCatalog, RolloutHub, Services
from console.service.launch import LaunchService
from console.service.logs import LogService
from console.settings import HubSettings
from proto import gamenode_pb2_grpc as pb_grpc

__all__ = ["GRPC_OPTIONS", "HubRuntime"]

log = logging.getLogger(__name__)

GRPC_OPTIONS: tuple[tuple[str, Any], ...] = (
    ("grpc.so_reuseport", 0),
    ("grpc.http2.bdp_probe", 0),
    ("grpc.server.max_pending_requests", 100_000),
    ("grpc.server.max_pending_requests_hard_limit", 100_000),
    ("grpc.keepalive_permit_without_calls", 1),
    ("grpc.http2.min_ping_interval_without_data_ms", 20_000),
    ("grpc.http2.max_ping_strikes", 0),
    ("grpc.max_receive_message_length", 16 * 1024 * 1024),
)


class HubRuntime:
    def __init__(
        self, services: Services, settings: HubSettings, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.services = services
        self.settings = settings
        self.live = LiveState(settings.metrics_history, settings.metrics_interval)
        self.feed = NodeFeed(asyncio.get_running_loop())
        self.registry = SessionRegistry(services, self.live, settings, clock=clock)
        self.live.subscribe(self.feed.changed)
        self._unsubscribe = services.nodes.nodes.subscribe(self.feed.changed_threadsafe)
        self.runs = RunBridge(services, self.registry)
        self.logs = LogService.from_settings(settings)
        services.runs.catalog = PipelineCatalog(settings.pipeline_dir)
        services.runs.dispatcher = self.runs
        self.launch = LaunchService.over(services, services.runs, is_online=self.registry.connected,
                                         agent=RegistryContainers(self.registry))
        self.server: aio.Server | None = None
        self.grpc_address = ""
        """`HOST:PORT` the gRPC server listens on (the real port when asked for port 0); agents dial it."""
        self.grpc_addresses: list[str] = []
        """Every address the gRPC server listens on, `grpc_address` first, then `unix:PATH` ones."""
        self._monitor: asyncio.Task[None] | None = None
        self._stopped = False

    def app(self) -> FastAPI:
        """The REST API over the same services, live state and sessions."""
        app = create_app(self.services, live=self.live, registry=self.registry, logs=self.logs)
        app.state.launch = self.launch
        return app

    async def start(self, listen: str, monitor_period: float = 1.0) -> str:
        """Serve gRPC on `listen` (comma-separated `HOST:PORT`, port 0: a free one, and `unix:PATH`) and
        watch for silent agents; the first TCP address (else the first), as bound."""
        addresses = split_listen(listen)
        tcp = [check_bindable(a, "grpc listen address") for a in addresses if unix_path(a) is None]
        for path in filter(None, map(unix_path, addresses)):
            prepare_unix(path)
        server = aio.server(options=GRPC_OPTIONS, compression=grpc.Compression.Gzip)
        pb_grpc.add_AgentServiceServicer_to_server(  # type: ignore[no-untyped-call]
            AgentServicer(self.registry, self.live, self.services.credentials, self.runs, self.logs), server
        )
        pb_grpc.add_HubServiceServicer_to_server(  # type: ignore[no-untyped-call]
            HubServicer(self.services, self.live, self.feed, VERSION, self.logs, self.launch), server
        )
        bound = [_add_port(server, host_port(host, port), listen) for host, port in tcp]
        unix = [a for a in addresses if unix_path(a) is not None]
        for address in unix:
            _add_port(server, address, listen)
        await server.start()
        for path in filter(None, map(unix_path, unix)):
            path.chmod(0o600)  # only this user's consoles
        self.server = server
        self.grpc_addresses = [host_port(host, port) for (host, _), port in zip(tcp, bound, strict=True)] + unix
        self.grpc_address = self.grpc_addresses[0]
        self._monitor = asyncio.create_task(self.registry.monitor(monitor_period))
        await self._serve_rollouts()
        resent = await asyncio.to_thread(self.services.runs.resume)
        if resent:
            log.info("%d run command(s) no agent acked before the hub stopped: sent again", resent)
        log.debug("gRPC on %s", ", ".join(self.grpc_addresses))
        return self.grpc_address

    async def _serve_rollouts(self) -> None:
        """Rollouts run on this loop and tell agents to dial `advertise_address` (default: the bound address)."""
        hub = RolloutHub(
            loop=asyncio.get_running_loop(), hub_address=self.settings.advertise_address or self.grpc_address,
            is_online=self.registry.connected, wheelhouse=self.settings.rollout_wheelhouse,
            bundle=self.settings.rollout_bundle,
        )
        stale = await asyncio.to_thread(self.services.rollouts.attach, hub)
        if stale:
            log.warning("%d rollout(s) the hub stopped during were marked failed", stale)

    async def stop(self, grace: float = 2.0) -> None:
        """Stop accepting calls, close agent streams and watches, flush the pending writes (once).

        Rollouts in progress are cancelled first: each host finishes or undoes its current step.
        """
        if self._stopped:
            return
        self._stopped = True
        await self.services.rollouts.close()
        if self._monitor is not None:
            self._monitor.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._monitor
        stopping = asyncio.create_task(self.server.stop(grace)) if self.server is not None else None
        await asyncio.sleep(0)  # the server stops accepting new calls first
        self.feed.close()
        await self.registry.close()
        if stopping is not None:
            await stopping
        await self.runs.close()
        self.services.runs.dispatcher = None
        await asyncio.to_thread(self.logs.close)
        self._unsubscribe()


def _add_port(server: aio.Server, address: str, listen: str) -> int:
    """Bind `address`; the port bound (TCP)."""
    try:
        return server.add_insecure_port(address)
    except RuntimeError as exc:
        raise ListenError(f"cannot listen on {listen} (gRPC): {exc}") from None
