"""How the agent reaches its hub: where to stream (Endpoints), enrolling (Join), and the stream's channel.

Before each connection the agent asks the hub's main gRPC address (`--hub`:
TLS checked against the pinned CA, or plaintext on an `--insecure` hub) where
agents stream (`Endpoints`; the hub may have moved that port). A node without
a usable certificate joins first: a key made here, a certificate request and
the join token go to `Join`, the certificate comes back, and both are stored in
`STATE_DIR/identity` (see `agent.identity`). The stream then opens on
`hub host : agent_port` with mTLS (the TLS layer proves the key), or, on an
`--insecure` hub, in plaintext with the certificate and a signature by its key
in the Hello (`agent.pki.sign_proof`).

A join token works once: the agent remembers the one it used and offers a
token again only when it is a new one (re-read from `--token @FILE` each time),
after the hub refused the node's certificate or when the node has none.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import grpc  # type: ignore[import-untyped, unused-ignore]

from agent import pki
from agent.errors import ConfigError, HubRefused, HubUnavailable, StateError
from agent.identity import Identity, IdentityStore
from agent.log import NodeLogger
from agent.settings import AgentSettings, parse_hub, read_token
from proto import gamenode_pb2 as pb
from proto import gamenode_pb2_grpc as pb_grpc

__all__ = ["CHANNEL_OPTIONS", "HubLink", "StreamTarget"]

CHANNEL_OPTIONS: tuple[tuple[str, int], ...] = (
    ("grpc.keepalive_time_ms", 30_000),
    ("grpc.keepalive_timeout_ms", 10_000),
    ("grpc.keepalive_permit_without_calls", 1),
    ("grpc.http2.max_pings_without_data", 0),
)
"""Keepalive for a stream that idles behind NAT for hours; the hub must permit 30 s pings."""


@dataclass(frozen=True)
class StreamTarget:
    """Where and how to open the stream."""

    channel: Any
    """A `grpc.aio.Channel` to the agent port (the caller closes it)."""
    address: str
    identity: Identity
    mtls: bool
    """False: the Hello must prove the certificate (`hello_proof`)."""


class HubLink:
    """Endpoints, Join and the stream's channel for one node; keeps its newest identity."""

    def __init__(self, settings: AgentSettings, log: NodeLogger) -> None:
        self.settings = settings
        self.log = log
        self.identities = IdentityStore(settings.state_dir)
        self.identity: Identity | None = None
        """The newest certificate and key (after a renewal: the ones the next connection uses)."""
        self.refused = False
        """The hub refused the node's certificate on the last stream: a new join token may re-enroll it."""

    # --- the connection -----------------------------------------------------------

    async def open(self) -> StreamTarget:
        """Ask Endpoints, join when needed, and open a channel to the stream port."""
        main = self._channel(self.settings.target, None)
        try:
            endpoints = await self._endpoints(main)
            identity = await self._usable_identity(main)
        finally:
            await main.close()
        host, port = parse_hub(self.settings.hub)
        port = endpoints.agent_port or port
        address = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        mtls = endpoints.mtls and not self.settings.insecure
        return StreamTarget(self._channel(address, identity if mtls else None), address, identity, mtls)

    def hello_proof(self, identity: Identity) -> dict[str, Any]:
        """Hello fields proving the certificate where TLS does not (a plaintext hub)."""
        now_ms = int(time.time() * 1000)
        return {"certificate_pem": identity.cert_pem, "proof_time_ms": now_ms,
                "proof": pki.sign_proof(identity.key, self.settings.node_id, now_ms)}

    def stream_refused(self, details: str) -> HubRefused:
        """The error for a stream the hub refused with UNAUTHENTICATED (and remember it, to re-enroll)."""
        self.refused = True
        node_id = self.settings.node_id
        hint = ""
        if not self._fresh_token():
            used = " (the one it has was used already)" if self._token() else ""
            hint = (f"; to enroll it again, give the agent a new join token{used} (--token @FILE; issue one with "
                    f"POST /api/v1/nodes/{node_id}/token)")
        return HubRefused(f"hub refused node {node_id}'s certificate: {details or 'no reason given'}{hint}")

    # --- the hub's main port --------------------------------------------------------

    def _channel(self, address: str, identity: Identity | None) -> Any:
        if self.settings.insecure:
            return grpc.aio.insecure_channel(address, options=CHANNEL_OPTIONS, compression=grpc.Compression.Gzip)
        ca = self._pinned_ca()
        credentials = grpc.ssl_channel_credentials(ca, identity.key_pem, identity.cert_pem) if identity else \
            grpc.ssl_channel_credentials(ca)
        return grpc.aio.secure_channel(address, credentials, options=CHANNEL_OPTIONS,
                                       compression=grpc.Compression.Gzip)

    def _pinned_ca(self) -> bytes:
        path = self.settings.ca_file or self.identities.ca_path
        try:
            ca = path.read_bytes()
            pki.load_cert(ca, str(path))
        except OSError as exc:
            raise ConfigError(f"--ca: cannot read {path}: {exc}") from None
        except pki.PkiError as exc:
            raise ConfigError(f"--ca: {exc.args[0]}") from None
        return ca

    async def _endpoints(self, channel: Any) -> pb.EndpointsResponse:
        stub = pb_grpc.AgentServiceStub(channel)  # type: ignore[no-untyped-call, unused-ignore]
        try:
            answer: pb.EndpointsResponse = await stub.Endpoints(pb.EndpointsRequest(),
                                                                timeout=self.settings.welcome_timeout)
        except grpc.aio.AioRpcError as exc:
            raise self._main_port_error("Endpoints", exc.code(), exc.details() or "") from None
        return answer

    def _main_port_error(self, rpc: str, code: Any, details: str) -> HubRefused | HubUnavailable:
        hub = self.settings.target
        handshake = details.lower().find("handshake failed")
        why = "TLS " + details[handshake:].removesuffix(": OK")
        if handshake >= 0 and "WRONG_VERSION_NUMBER" in details:
            return HubRefused(f"hub {hub} does not speak TLS (a hub started with --insecure? then start the agent "
                              f"with --insecure): {why}")
        if handshake >= 0:
            ca = self.settings.ca_file or self.identities.ca_path
            return HubRefused(f"cannot verify the TLS certificate of hub {hub} with the CA in {ca} (is it the hub's "
                              f"DATA_DIR/ca.pem?): {why}")
        if code == grpc.StatusCode.UNIMPLEMENTED:
            return HubUnavailable(f"hub {hub} does not serve AgentService.{rpc}: it is older than this agent "
                                  "(upgrade the hub)")
        return HubUnavailable(f"hub {hub}: {code.name}" + (f": {details}" if details else ""))

    # --- identity -------------------------------------------------------------------

    async def _usable_identity(self, main: Any) -> Identity:
        """The stored identity, unless it cannot be used (or was refused) and a new join token is at hand."""
        node_id = self.settings.node_id
        identity, problem = self.identities.usable(node_id)
        token = self._fresh_token()
        if identity is not None and not problem and not (self.refused and token):
            self.identity = identity
            return identity
        if not token:
            used = " (the join token it has was used already)" if self._token() else ""
            raise HubRefused(f"node {node_id} cannot connect: {problem or 'the hub refused its certificate'}; it "
                             f"needs a new join token{used}: issue one (POST /api/v1/nodes/{node_id}/token) and give "
                             "it to the agent (--token @FILE)")
        if problem:
            self.log.info("joining the hub: %s", problem)
        else:
            self.log.info("joining the hub again with a new join token: the hub refused the node's certificate")
        return await self._join(main, token)

    async def _join(self, channel: Any, token: str) -> Identity:
        node_id = self.settings.node_id
        key = pki.new_key()
        request = pb.JoinRequest(node_id=node_id, token=token, csr_pem=pki.make_csr(key, node_id))
        stub = pb_grpc.AgentServiceStub(channel)  # type: ignore[no-untyped-call, unused-ignore]
        try:
            answer: pb.JoinResponse = await stub.Join(request, timeout=self.settings.welcome_timeout)
        except grpc.aio.AioRpcError as exc:
            raise self._join_error(exc.code(), exc.details() or "") from None
        try:
            identity = self.identities.save(key, answer.certificate_pem, node_id)
        except (pki.PkiError, StateError) as exc:
            raise HubUnavailable(f"hub {self.settings.target} answered Join with an unusable certificate: "
                                 f"{exc.args[0]}") from None
        if not self.settings.insecure:
            self.identities.save_ca(self._pinned_ca())
        self.identities.mark_used(token)
        self.identity, self.refused = identity, False
        self.log.info("joined the hub: node certificate %s (key and certificate in %s)", identity.describe(),
                      self.identities.dir)
        return identity

    def _join_error(self, code: Any, details: str) -> HubRefused | HubUnavailable:
        node_id = self.settings.node_id
        if code == grpc.StatusCode.UNAUTHENTICATED:
            return HubRefused(f"hub refused the join token for node {node_id}: {details or 'no reason given'}")
        if code == grpc.StatusCode.PERMISSION_DENIED:
            return HubRefused(f"hub refused to enroll node {node_id}: {details or 'no reason given'}")
        return self._main_port_error("Join", code, details)

    def _token(self) -> str:
        """The join token: `--token @FILE` read again (an operator may have written a new one), else as given."""
        if self.settings.token_file is not None:
            try:
                return read_token(f"@{self.settings.token_file}")
            except ConfigError:
                pass  # the file is gone or empty now: the token read at start still counts
        return self.settings.token

    def _fresh_token(self) -> str:
        """The join token when the agent has not exchanged it yet; else ""."""
        token = self._token()
        return token if token and not self.identities.token_used(token) else ""
