"""A malformed agent against a real `gamenode hub` process, next to a real, well-behaved agent.

The bad client enrolls like any agent (a join token over REST, `Join` with its own key on the TLS
port), then streams on the mTLS agent port and breaks the wire contract in every way the hub
checks: each attempt ends only its own stream, with a status that says why, and the real agent's
node stays online and answers a ping (a command round trip through its stream) after each.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from fleet_helpers import Fleet

from agent.pki import key_pem, make_csr, new_key
from proto import gamenode_pb2 as pb
from proto import gamenode_pb2_grpc as pb_grpc

WAIT = 30.0
MiB = 1024 * 1024
GARBAGE = b"\xff\xff\xff\xff\x0f not protobuf"


@pytest.fixture
def fleet(tmp_path: Path) -> Iterator[Fleet]:
    fleet = Fleet(tmp_path)
    yield fleet
    fleet.close()


class BadAgent:
    """A node's key and certificate, and raw streams on the hub's agent port with them."""

    def __init__(self, fleet: Fleet, node_id: str) -> None:
        token = fleet.add_node(node_id)
        self.node_id = node_id
        self.ca = (fleet.data_dir / "ca.pem").read_bytes()
        key = new_key()
        with grpc.secure_channel(fleet.hub.grpc_address, grpc.ssl_channel_credentials(self.ca)) as channel:
            joined = pb_grpc.AgentServiceStub(channel).Join(
                pb.JoinRequest(node_id=node_id, token=token, csr_pem=make_csr(key, node_id)), timeout=WAIT)
        self.credentials = grpc.ssl_channel_credentials(self.ca, key_pem(key), joined.certificate_pem)
        self.address = fleet.hub.agent_address
        assert self.address, "the hub announced no agent address"

    def hello(self) -> bytes:
        return pb.AgentMessage(hello=pb.Hello(node_id=self.node_id, agent_version="bad", first_unacked_seq=1)
                               ).SerializeToString()

    def stream(self, *messages: bytes) -> tuple[grpc.StatusCode, str]:
        """Send `messages` (raw bytes) on one stream; how the hub ended it."""
        with grpc.secure_channel(self.address, self.credentials) as channel:
            call = channel.stream_stream("/gamenode.v1.AgentService/Connect")(iter(messages), timeout=WAIT)
            with pytest.raises(grpc.RpcError) as ended:
                for _ in call:
                    pass
        error: grpc.Call = ended.value  # type: ignore[assignment]  # a failed call is both
        return error.code(), error.details() or ""


def chunk(*texts: str, source: str = "agent", stream: str = "") -> bytes:
    lines = [pb.LogLine(text=t, stream=stream) for t in texts]
    return pb.AgentMessage(seq=1, log_chunk=pb.LogChunk(source=source, lines=lines)).SerializeToString()


def lines_of(total: int) -> list[str]:
    return ["z" * (64 * 1024)] * (total // (64 * 1024))


def assert_still_served(fleet: Fleet) -> None:
    ping = fleet.ping("good")
    assert ping.status_code == 200, ping.text
    node = fleet.node("good")
    assert node["online"] and node["status"] == "online"


def test_a_malformed_agent_is_refused_stream_by_stream_while_a_real_agent_carries_on(fleet: Fleet) -> None:
    fleet.start_hub()
    fleet.start_agents(["good"])
    fleet.wait_online(["good"])
    bad = BadAgent(fleet, "bad")
    cases: list[tuple[str, tuple[bytes, ...], grpc.StatusCode, str]] = [
        ("an event before hello", (pb.AgentMessage(heartbeat=pb.Heartbeat()).SerializeToString(),),
         grpc.StatusCode.INVALID_ARGUMENT, "the first message must be hello"),
        ("hello twice", (bad.hello(), bad.hello()), grpc.StatusCode.INVALID_ARGUMENT, "hello sent twice"),
        ("a 10 MB message", (bad.hello(), chunk(*lines_of(10 * 1000 * 1000))),
         grpc.StatusCode.RESOURCE_EXHAUSTED, ""),
        ("a 2 MiB log chunk", (bad.hello(), chunk(*lines_of(2 * MiB))),
         grpc.StatusCode.INVALID_ARGUMENT, "over the limit of 1048576 bytes (1 MiB)"),
        ("an unknown step state", (bad.hello(), pb.AgentMessage(seq=1, pipeline_event=pb.PipelineEvent(
            run_id="r1", state=23)).SerializeToString()),  # type: ignore[arg-type]
         grpc.StatusCode.INVALID_ARGUMENT, "pipeline_event.state: unknown value 23"),
        ("an unknown log stream", (bad.hello(), chunk("x", stream="stdnull")),
         grpc.StatusCode.INVALID_ARGUMENT, "log_chunk.lines[0].stream: unknown value 'stdnull'"),
        ("garbage first", (GARBAGE,), grpc.StatusCode.INVALID_ARGUMENT, "Error parsing message"),
        ("garbage after hello", (bad.hello(), GARBAGE), grpc.StatusCode.INVALID_ARGUMENT, "Error parsing message"),
    ]
    for what, messages, code, reason in cases:
        got, details = bad.stream(*messages)
        assert (got, reason in details) == (code, True), f"{what}: {got} {details!r}"
        assert_still_served(fleet)

    with grpc.secure_channel(fleet.hub.grpc_address, grpc.ssl_channel_credentials(bad.ca)) as channel:
        with pytest.raises(grpc.RpcError) as refused:
            channel.unary_unary("/gamenode.v1.AgentService/Join")(GARBAGE, timeout=WAIT)
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT  # type: ignore[attr-defined]
    assert_still_served(fleet)

    hub_log = fleet.hub.output()
    assert "Traceback" not in hub_log
    assert "protocol error: pipeline_event.state: unknown value 23" in hub_log  # said once, with the node
