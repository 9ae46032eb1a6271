"""Bad input on the agent stream (`console.hub.limits`): malformed clients, oversized and unknown values, floods.

Each malformed client ends only its own stream, with a status that says why; a well-behaved agent
on the same hub keeps streaming (its events acked, its heartbeats handled) through all of it. A
flooding agent is read at its `event_rate`: counted with the hub's own counter (the last event seq
it handled), never timed on its own.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

import grpc
import pytest
from grpc import aio
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from console.hub.limits import MAX_LOG_TEXT, TokenBucket, check_message
from console.settings import HubSettings
from proto import gamenode_pb2 as pb
from proto import gamenode_pb2_grpc as pb_grpc

if TYPE_CHECKING:
    from conftest import FakeAgent, Hub

MiB = 1024 * 1024
WAIT = 10.0
"""Seconds a test waits for something the hub will do (a bound, never a measurement)."""


# --- the token bucket ------------------------------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_a_bucket_lets_a_burst_through_then_asks_for_waits_that_repay_its_debt() -> None:
    clock = Clock()
    bucket = TokenBucket(rate=10, burst=3, clock=clock)
    assert [bucket.take() for _ in range(3)] == [0.0, 0.0, 0.0]
    assert bucket.take() == pytest.approx(0.1)  # one token short at 10/s
    assert bucket.take() == pytest.approx(0.2)
    clock.now += 0.2  # the waits were kept: the debt is repaid
    assert bucket.take() == pytest.approx(0.1)
    clock.now += 10  # a long quiet spell refills to the burst, not beyond
    assert [bucket.take() for _ in range(3)] == [0.0, 0.0, 0.0]
    assert bucket.take() > 0
    assert bucket.pauses == 4


@given(st.lists(st.floats(min_value=0, max_value=0.5), max_size=200), st.integers(1, 20), st.floats(1, 100))
def test_a_reader_that_keeps_the_waits_reads_at_most_burst_plus_rate_times_elapsed(
    gaps: list[float], burst: int, rate: float
) -> None:
    clock = Clock()
    bucket = TokenBucket(rate=rate, burst=burst, clock=clock)
    for read, gap in enumerate(gaps, start=1):
        clock.now += bucket.take() + gap  # the reader waits what it is told, then the next message comes
        assert read <= burst + rate * clock.now + 1e-6


@pytest.mark.parametrize(("rate", "burst"), [(0, 1), (-1, 5), (1, 0)])
def test_a_bucket_needs_a_positive_rate_and_a_burst_of_one_or_more(rate: float, burst: int) -> None:
    with pytest.raises(ValueError, match="token bucket"):
        TokenBucket(rate, burst)


def test_the_settings_give_each_stream_its_bucket() -> None:
    assert (HubSettings().event_rate, HubSettings().event_burst) == (200.0, 2000)
    bucket = TokenBucket.for_stream(HubSettings(event_rate=5, event_burst=7))
    assert (bucket.rate, bucket.burst, bucket.tokens) == (5, 7, 7)


@pytest.mark.parametrize("fields", [{"event_rate": 0}, {"event_rate": -2}, {"event_burst": 0}])
def test_the_rate_settings_refuse_a_bucket_that_could_never_fill(fields: dict[str, float]) -> None:
    with pytest.raises(ValidationError, match="event_"):
        HubSettings(**fields)


# --- the message check -----------------------------------------------------------------------


def chunk(source: str = "agent", *texts: str, stream: str = "") -> pb.AgentMessage:
    lines = [pb.LogLine(text=t, stream=stream) for t in texts]
    return pb.AgentMessage(seq=1, log_chunk=pb.LogChunk(source=source, lines=lines))


@pytest.mark.parametrize("message", [
    pb.AgentMessage(heartbeat=pb.Heartbeat(instances=1)),
    pb.AgentMessage(seq=1, pipeline_event=pb.PipelineEvent(run_id="r1", state=pb.STEP_STATE_CANCELLED)),
    pb.AgentMessage(seq=1, pipeline_event=pb.PipelineEvent(run_id="r1")),  # UNSPECIFIED: a known value
    chunk("agent", "hello", stream=""),
    chunk("run:r-1", "pulled", stream="stdout"),
    chunk("instance:i1", "x" * (MAX_LOG_TEXT // 2), "y" * (MAX_LOG_TEXT // 2), stream="stderr"),  # 1 MiB exactly
    pb.AgentMessage(seq=1, instance_report=pb.InstanceReport(instances=[
        pb.InstanceStatus(instance_id="i1", state=s) for s in ("running", "exited", "removed", "oom", "")])),
    pb.AgentMessage(seq=1, command_ack=pb.CommandAck(command_id="c1", ok=True)),
    pb.AgentMessage(),  # no body: a newer agent's message, ignored
], ids=lambda m: m.WhichOneof("body") or "empty")
def test_what_agents_send_passes(message: pb.AgentMessage) -> None:
    assert check_message(message) is None


@pytest.mark.parametrize(("message", "expected"), [
    (pb.AgentMessage(seq=1, pipeline_event=pb.PipelineEvent(run_id="r1", state=99)),  # type: ignore[arg-type]
     "pipeline_event.state: unknown value 99 (expected one of STEP_STATE_UNSPECIFIED, "),
    (chunk("cron:nightly", "x"), "log_chunk.source: unknown kind 'cron:nightly' (expected agent, run:<id> or "),
    (chunk("", "x"), "log_chunk.source: unknown kind ''"),
    (chunk("agent", "x", stream="stdweird"), "log_chunk.lines[0].stream: unknown value 'stdweird'"),
    (chunk("agent", "x" * (MAX_LOG_TEXT + 1)),
     "log_chunk.lines: 1048577 bytes of line text, over the limit of 1048576 bytes (1 MiB)"),
    (chunk("agent", "é" * (MAX_LOG_TEXT // 2 + 1)), "log_chunk.lines: 1048578 bytes of line text"),  # UTF-8 bytes
    (pb.AgentMessage(seq=1, instance_report=pb.InstanceReport(instances=[
        pb.InstanceStatus(instance_id="i1", state="running"), pb.InstanceStatus(instance_id="i2", state="melted")])),
     "instance_report.instances[1].state: unknown value 'melted' (expected created, dead, "),
], ids=["state", "source", "empty-source", "stream", "size", "utf8-size", "instance-state"])
def test_a_bad_value_is_named_by_its_field(message: pb.AgentMessage, expected: str) -> None:
    problem = check_message(message)
    assert problem is not None and problem.startswith(expected), problem


def test_a_long_value_is_cut_in_the_message() -> None:
    problem = check_message(chunk("x" * 10_000, "line"))
    assert problem is not None and len(problem) < 200


# --- malformed clients on a live hub ---------------------------------------------------------


async def bystander(hub: Hub) -> FakeAgent:
    """A well-behaved agent, streaming before the malformed client starts."""
    good = hub.make_agent("good")
    await good.connect()
    await good.sync()
    return good


async def until(condition: Callable[[], bool]) -> None:
    deadline = time.monotonic() + WAIT
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.01)


async def still_served(hub: Hub, good: FakeAgent) -> None:
    """The bystander's heartbeats and events are still handled and acked."""
    await good.heartbeat(instances=3)
    await good.sync()
    assert hub.registry.connected("good")
    live = hub.runtime.live.find("good")
    assert live is not None and live.instances == 3


def oversized(total: int) -> pb.AgentMessage:
    """A log chunk of `total` bytes of line text, in 64 KiB lines."""
    line = "z" * (64 * 1024)
    return pb.AgentMessage(seq=1, log_chunk=pb.LogChunk(source="agent", lines=[
        pb.LogLine(text=line) for _ in range(total // len(line))]))


Malformed = Callable[["FakeAgent"], Awaitable[None]]


async def _events_before_hello(bad: FakeAgent) -> None:
    await bad.open()
    await bad.heartbeat()


async def _hello_twice(bad: FakeAgent) -> None:
    await bad.connect()
    await bad.send(hello=bad.hello())


async def _send_after_hello(message: pb.AgentMessage, bad: FakeAgent) -> None:
    await bad.connect()
    kind = message.WhichOneof("body")
    await bad.send(message.seq, **{kind: getattr(message, kind)})


CASES: dict[str, tuple[Malformed, grpc.StatusCode, str]] = {
    "events before hello": (_events_before_hello, grpc.StatusCode.INVALID_ARGUMENT, "the first message must be hello"),
    "hello twice": (_hello_twice, grpc.StatusCode.INVALID_ARGUMENT, "hello sent twice on one stream"),
    "10 MB message": (lambda bad: _send_after_hello(oversized(10 * 1000 * 1000), bad),
                      grpc.StatusCode.RESOURCE_EXHAUSTED, "4194304"),
    "2 MiB chunk in a 4 MiB message": (lambda bad: _send_after_hello(oversized(2 * MiB), bad),
                                       grpc.StatusCode.INVALID_ARGUMENT,
                                       "log_chunk.lines: 2097152 bytes of line text, over the limit of 1048576"),
    "unknown step state": (
        lambda bad: _send_after_hello(pb.AgentMessage(seq=1, pipeline_event=pb.PipelineEvent(
            run_id="r1", state=42)), bad),  # type: ignore[arg-type]
        grpc.StatusCode.INVALID_ARGUMENT, "pipeline_event.state: unknown value 42"),
    "unknown log source": (lambda bad: _send_after_hello(chunk("printer:1", "x"), bad),
                           grpc.StatusCode.INVALID_ARGUMENT, "log_chunk.source: unknown kind 'printer:1'"),
    "unknown log stream": (lambda bad: _send_after_hello(chunk("agent", "x", stream="stdin"), bad),
                           grpc.StatusCode.INVALID_ARGUMENT, "log_chunk.lines[0].stream: unknown value 'stdin'"),
    "unknown instance state": (
        lambda bad: _send_after_hello(pb.AgentMessage(seq=1, instance_report=pb.InstanceReport(
            instances=[pb.InstanceStatus(instance_id="i1", state="on fire")])), bad),
        grpc.StatusCode.INVALID_ARGUMENT, "instance_report.instances[0].state: unknown value 'on fire'"),
}


@pytest.mark.parametrize("case", list(CASES))
async def test_a_malformed_agent_stream_ends_alone_and_says_why(hub: Hub, case: str) -> None:
    malformed, code, reason = CASES[case]
    good = await bystander(hub)
    bad = hub.make_agent("bad")

    await malformed(bad)
    got, details = await bad.ended()

    assert got == code, (got, details)
    assert reason in details
    await still_served(hub, good)
    await until(lambda: not hub.registry.connected("bad"))


async def test_a_bad_event_is_not_handled_and_not_acked(hub: Hub) -> None:
    bad = hub.make_agent("bad")
    await bad.connect()
    await bad.send(1, pipeline_event=pb.PipelineEvent(run_id="r1", state=77))  # type: ignore[arg-type]
    code, _ = await bad.ended()
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert not (hub.registry.last_event_seq("bad") or 0)  # resent after the agent is fixed, not lost
    live = hub.runtime.live.find("bad")
    assert live is None or not live.pipeline_events


# --- garbage bytes -----------------------------------------------------------------------------


GARBAGE = b"\xff\xff\xff\xff\x0f not protobuf"


async def test_garbage_bytes_on_the_stream_end_it_cleanly(hub: Hub, caplog: pytest.LogCaptureFixture) -> None:
    good = await bystander(hub)
    bad = hub.make_agent("bad")
    await bad.join()
    assert bad.identity is not None
    hello = pb.AgentMessage(hello=bad.hello()).SerializeToString()
    async with hub.endpoint.agent_channel(bad.identity) as channel:
        for sent in ([GARBAGE], [hello, GARBAGE]):
            call = channel.stream_stream("/gamenode.v1.AgentService/Connect")(iter(sent))
            with pytest.raises(aio.AioRpcError) as failed:
                async for _ in call:
                    pass
            assert failed.value.code() == grpc.StatusCode.INVALID_ARGUMENT, failed.value
            assert "Error parsing message with type 'gamenode.v1.AgentMessage'" in (failed.value.details() or "")
    await still_served(hub, good)
    await until(lambda: not hub.registry.connected("bad"))
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]  # a status, not a traceback


@pytest.mark.parametrize("method", ["/gamenode.v1.AgentService/Join", "/gamenode.v1.AgentService/Endpoints",
                                    "/gamenode.v1.HubService/GetNode", "/gamenode.v1.HubService/StartRun",
                                    "/gamenode.v1.HubService/WatchRun"])  # a unary request, a stream answer
async def test_garbage_bytes_in_a_unary_call_fail_it_cleanly(
    hub: Hub, method: str, caplog: pytest.LogCaptureFixture
) -> None:
    good = await bystander(hub)
    call = hub.channel.unary_unary(method)
    with pytest.raises(aio.AioRpcError) as failed:
        await call(GARBAGE, timeout=WAIT)
    assert failed.value.code() == grpc.StatusCode.INVALID_ARGUMENT, failed.value
    assert (failed.value.details() or "").startswith("the request is not a valid message: Error parsing message")
    await still_served(hub, good)
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]  # a status, not a traceback


async def test_a_valid_unary_call_still_answers_through_the_guard(hub: Hub) -> None:
    answer = await pb_grpc.AgentServiceStub(hub.channel).Endpoints(pb.EndpointsRequest(), timeout=WAIT)
    assert answer.mtls and answer.agent_port > 0


# --- a flood ---------------------------------------------------------------------------------


RATE, BURST, FLOOD = 50.0, 100, 5000


async def test_a_flooding_agent_is_read_at_its_rate_while_others_are_served(
    hub: Hub, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="console.hub.sessions")
    # Streams opened from now on get a small bucket (each stream reads the settings when it starts).
    hub.registry.settings = hub.registry.settings.model_copy(update={"event_rate": RATE, "event_burst": BURST})
    good = await bystander(hub)
    flooder = hub.make_agent("flooder")
    await flooder.connect()
    started = time.monotonic()
    for _ in range(FLOOD):
        await flooder.event(log_chunk=pb.LogChunk(source="agent", lines=[pb.LogLine(text="flood")]))

    def handled() -> int:
        return hub.registry.last_event_seq("flooder") or 0

    async def within_the_rate() -> int:
        """The flooder's events handled so far, checked against what its bucket allows by now."""
        count = handled()
        assert count <= BURST + RATE * (time.monotonic() - started) + 2, count
        return count

    deadline = time.monotonic() + WAIT
    while await within_the_rate() < BURST and time.monotonic() < deadline:
        await asyncio.sleep(0.01)
    assert await within_the_rate() >= BURST  # the burst is read without a wait

    for _ in range(5):  # the bystander's round trips go through while the flood is held back
        await still_served(hub, good)
        assert await within_the_rate() < FLOOD
        await asyncio.sleep(0.1)
    before = await within_the_rate()
    await still_served(hub, good)
    deadline = time.monotonic() + WAIT
    while await within_the_rate() == before and time.monotonic() < deadline:
        await asyncio.sleep(0.01)
    assert await within_the_rate() > before  # slowed, not stopped
    assert hub.registry.connected("flooder")  # and not closed

    throttled = [r for r in caplog.records if "reading this stream slower" in r.getMessage()]
    assert len(throttled) == 1 and "node flooder " in throttled[0].getMessage()
