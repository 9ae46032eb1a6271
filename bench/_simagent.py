"""Simulated agents' identity for the benches: join the hub with a join token, then open the agent stream.

The same steps as `agent.hublink`, without a state dir: `Endpoints` and `Join` on the hub's gRPC address
(TLS with the hub's CA, or plaintext on an `--insecure` hub), a key made here, then a channel to the agent
port with mTLS, or, on a plaintext hub, the Hello fields that prove the certificate.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any


async def open_stream(hub: str, node_id: str, token: str, ca_pem: bytes | None,
                      options: Sequence[tuple[str, Any]] = ()) -> tuple[Any, dict[str, Any]]:
    """(a channel to the agent port, extra `Hello` fields); `ca_pem` None: the hub is --insecure."""
    import grpc

    from agent import pki
    from proto import gamenode_pb2 as pb
    from proto import gamenode_pb2_grpc as pb_grpc

    def channel(address: str, credentials: Any) -> Any:
        if credentials is None:
            return grpc.aio.insecure_channel(address, options=list(options))
        return grpc.aio.secure_channel(address, credentials, options=list(options))

    key = pki.new_key()
    main = channel(hub, None if ca_pem is None else grpc.ssl_channel_credentials(ca_pem))
    try:
        stub = pb_grpc.AgentServiceStub(main)
        endpoints = await stub.Endpoints(pb.EndpointsRequest(), timeout=60)
        joined = await stub.Join(pb.JoinRequest(node_id=node_id, token=token, csr_pem=pki.make_csr(key, node_id)),
                                 timeout=60)
    finally:
        await main.close()
    host, _, port = hub.rpartition(":")
    address = f"{host}:{endpoints.agent_port or port}"
    if ca_pem is not None and endpoints.mtls:
        credentials = grpc.ssl_channel_credentials(ca_pem, pki.key_pem(key), joined.certificate_pem)
        return channel(address, credentials), {}
    now_ms = int(time.time() * 1000)
    proof = {"certificate_pem": joined.certificate_pem, "proof": pki.sign_proof(key, node_id, now_ms),
             "proof_time_ms": now_ms}
    return channel(address, None if ca_pem is None else grpc.ssl_channel_credentials(ca_pem)), proof
