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

Transport (issue #7): the hub's CA (`HubCA`, made in the data directory on
first start) signs the hub's server certificate and the nodes' client
certificates. TCP `grpc_listen` addresses serve TLS (consoles, `Endpoints`,
`Join`); `unix:PATH` ones stay plaintext (0600). A second server on
`agent_listen` serves agent streams with mTLS: only certificates of this CA
get through the handshake, and `AgentServicer` then checks the node and
serial. `insecure`: every TCP listener plaintext and agents stream on the
gRPC port, proving their key in the Hello (a warning says so at start).
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import time
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import grpc
from fastapi import FastAPI
from grpc import aio

from console.hub.agent_service import AgentServicer
from console.hub.app import VERSION, create_app
from console.hub.auth import Authenticator
from console.hub.containers import RegistryContainers
from console.hub.grpc_auth import guard_hub_servicer
from console.hub.hub_service import HubServicer
from console.hub.limits import UndecodableRequests
from console.hub.listen import ListenError, check_bindable, host_port, prepare_unix, split_listen, unix_path
from console.hub.live import LiveState
from console.hub.run_bridge import RunBridge
from console.hub.sessions import SessionRegistry
from console.hub.watch import NodeFeed
from console.service import PipelineCatalog, RolloutHub, Services
from console.service.ca import HubCA
from console.service.launch import LaunchService
from console.service.logs import LogService
from console.settings import HubSettings, parse_listen
from proto import gamenode_pb2_grpc as pb_grpc

__all__ = ["AGENT_GRPC_OPTIONS", "GRPC_OPTIONS", "HubRuntime"]

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
AGENT_GRPC_OPTIONS: tuple[tuple[str, Any], ...] = (
    *(option for option in GRPC_OPTIONS if option[0] != "grpc.max_receive_message_length"),
    ("grpc.max_receive_message_length", 4 * 1024 * 1024),
)
"""The agent listener's: the same, with a smaller message limit (no agent message needs more)."""


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
        self.logs.secrets = services.runs.secrets_on  # a second guard: agents redact first
        services.runs.catalog = PipelineCatalog(settings.pipeline_dir)
        services.runs.dispatcher = self.runs
        self.launch = LaunchService.over(services, services.runs, is_online=self.registry.connected,
                                         agent=RegistryContainers(self.registry))
        self.server: aio.Server | None = None
        self.grpc_address = ""
        """`HOST:PORT` the gRPC server listens on (the real port when asked for port 0); agents dial it."""
        self.grpc_addresses: list[str] = []
        """Every address the gRPC server listens on, `grpc_address` first, then `unix:PATH` ones."""
        self.agent_server: aio.Server | None = None
        """The mTLS server agents stream to (None with `insecure`: they use the gRPC server)."""
        self.agent_address = ""
        """`HOST:PORT` agents stream on (the mTLS listener, or with `insecure` the gRPC address)."""
        self.ca: HubCA | None = None
        """The hub's CA, loaded (or made) by `start`."""
        self._monitor: asyncio.Task[None] | None = None
        self._stopped = False

    def app(self) -> FastAPI:
        """The REST API over the same services, live state and sessions."""
        app = create_app(self.services, live=self.live, registry=self.registry, logs=self.logs,
                         auth=Authenticator.for_hub(self.services))
        app.state.launch = self.launch
        return app

    async def start(self, listen: str, monitor_period: float = 1.0) -> str:
        """Serve gRPC on `listen` (comma-separated `HOST:PORT`, port 0: a free one, and `unix:PATH`) and
        watch for silent agents; the first TCP address (else the first), as bound."""
        addresses = split_listen(listen)
        tcp = [check_bindable(a, "grpc listen address") for a in addresses if unix_path(a) is None]
        agent_listen = None if self.settings.insecure else self._agent_listen(tcp)
        agent = check_bindable(agent_listen, "agent listen address") if agent_listen else None
        for path in filter(None, map(unix_path, addresses)):
            prepare_unix(path)
        ca = self.ca = await asyncio.to_thread(HubCA.load_or_create, self.settings.data_dir,
                                               self._ca_hosts(tcp, agent))
        self._configure_credentials(ca)
        agents = AgentServicer(self.registry, self.live, self.services.credentials, self.runs, self.logs,
                               insecure=self.settings.insecure, version=VERSION, audit=self.services.audit)
        server = aio.server(options=GRPC_OPTIONS, compression=grpc.Compression.Gzip,
                            interceptors=[UndecodableRequests()])  # garbage requests: INVALID_ARGUMENT
        pb_grpc.add_AgentServiceServicer_to_server(agents, server)  # type: ignore[no-untyped-call]
        pb_grpc.add_HubServiceServicer_to_server(  # type: ignore[no-untyped-call]
            guard_hub_servicer(HubServicer(self.services, self.live, self.feed, VERSION, self.logs, self.launch),
                               Authenticator.for_hub(self.services), self.services.audit), server
        )
        tls = None if self.settings.insecure else grpc.ssl_server_credentials([(ca.server_key_pem, ca.server_pem)])
        bound = [_add_port(server, host_port(host, port), listen, tls) for host, port in tcp]
        unix = [a for a in addresses if unix_path(a) is not None]
        for address in unix:
            _add_port(server, address, listen)  # plaintext: the socket file's mode guards it
        await server.start()
        for path in filter(None, map(unix_path, unix)):
            path.chmod(0o600)  # only this user's consoles
        self.server = server
        self.grpc_addresses = [host_port(host, port) for (host, _), port in zip(tcp, bound, strict=True)] + unix
        self.grpc_address = self.grpc_addresses[0]
        if agent is not None and agent_listen is not None:
            await self._serve_agents(agents, ca, agent, agent_listen)
        elif self.settings.insecure:
            self.agent_address = self.grpc_address if tcp else ""
            log.warning("--insecure: every TCP listener (%s) is plaintext and agents prove their key in the "
                        "hello; use it on a trusted network only", ", ".join(self.grpc_addresses[:len(tcp)]))
        self._monitor = asyncio.create_task(self.registry.monitor(monitor_period))
        await self._serve_rollouts()
        resent = await asyncio.to_thread(self.services.runs.resume)
        if resent:
            log.info("%d run command(s) no agent acked before the hub stopped: sent again", resent)
        log.debug("gRPC on %s", ", ".join(self.grpc_addresses))
        return self.grpc_address

    def _agent_listen(self, tcp: list[tuple[str, int]]) -> str | None:
        """`agent_listen`, or the first TCP gRPC host at its port + 1 (0 when that is 0); None without TCP."""
        if self.settings.agent_listen:
            return self.settings.agent_listen
        if not tcp:
            return None
        host, port = tcp[0]
        return host_port(host, port + 1 if port else 0)

    def _ca_hosts(self, tcp: list[tuple[str, int]], agent: tuple[str, int] | None) -> tuple[str, ...]:
        """The hosts the server certificate must name: every listen host (but wildcards) and the advertised one."""
        hosts = [host for host, _ in tcp] + ([agent[0]] if agent else [])
        if self.settings.advertise_address:
            hosts.append(parse_listen(self.settings.advertise_address)[0])
        return tuple(dict.fromkeys(h for h in hosts if not _wildcard(h)))

    def _configure_credentials(self, ca: HubCA) -> None:
        credentials = self.services.credentials
        credentials.ca = ca
        credentials.join_token_ttl = timedelta(seconds=self.settings.join_token_ttl)
        credentials.cert_lifetime = timedelta(days=self.settings.node_cert_days)

    async def _serve_agents(self, agents: AgentServicer, ca: HubCA, address: tuple[str, int], listen: str) -> None:
        """The mTLS listener: a client certificate of this CA or no handshake."""
        server = aio.server(options=AGENT_GRPC_OPTIONS, compression=grpc.Compression.Gzip)
        pb_grpc.add_AgentServiceServicer_to_server(agents, server)  # type: ignore[no-untyped-call]
        mtls = grpc.ssl_server_credentials([(ca.server_key_pem, ca.server_pem)], root_certificates=ca.ca_pem,
                                           require_client_auth=True)
        port = _add_port(server, host_port(*address), listen, mtls)
        await server.start()
        self.agent_server = server
        agents.agent_port = port
        self.agent_address = host_port(address[0], port)

    async def _serve_rollouts(self) -> None:
        """Rollouts run on this loop and tell agents to dial `advertise_address` (default: the bound address)."""
        assert self.ca is not None
        hub = RolloutHub(
            loop=asyncio.get_running_loop(), hub_address=self.settings.advertise_address or self.grpc_address,
            is_online=self.registry.connected, wheelhouse=self.settings.rollout_wheelhouse,
            bundle=self.settings.rollout_bundle, ca_pem=None if self.settings.insecure else self.ca.ca_pem,
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
        servers = [s for s in (self.agent_server, self.server) if s is not None]
        stopping = [asyncio.create_task(s.stop(grace)) for s in servers]
        await asyncio.sleep(0)  # the servers stop accepting new calls first
        self.feed.close()
        await self.registry.close()
        if stopping:
            await asyncio.gather(*stopping)
        await self.runs.close()
        self.services.runs.dispatcher = None
        await asyncio.to_thread(self.logs.close)
        self._unsubscribe()


def _add_port(
    server: aio.Server, address: str, listen: str, credentials: grpc.ServerCredentials | None = None
) -> int:
    """Bind `address` (TLS with `credentials`, else plaintext); the port bound (TCP)."""
    try:
        if credentials is not None:
            return server.add_secure_port(address, credentials)
        return server.add_insecure_port(address)
    except RuntimeError as exc:
        raise ListenError(f"cannot listen on {listen} (gRPC): {exc}") from None


def _wildcard(host: str) -> bool:
    """0.0.0.0, :: and the like: a listen host no client dials."""
    try:
        return ipaddress.ip_address(host).is_unspecified
    except ValueError:
        return False
