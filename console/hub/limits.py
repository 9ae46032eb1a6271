"""What one agent stream may send: a rate, a size, and only values this hub knows.

An agent's stream is the hub's widest door, so each message is checked
before it is handled, and each stream reads at a bounded rate:

- Size: gRPC refuses a message over the agent listener's 4 MiB
  (`MAX_AGENT_MESSAGE`, RESOURCE_EXHAUSTED) before the hub sees it; a log
  chunk carrying more than 1 MiB of line text (`MAX_LOG_TEXT`) is refused by
  `check_message`. The agent batches lines far below that (`agent/logbatch.py`).
- Values: protobuf enums are open (an unknown number parses fine) and some
  kinds travel as strings; `check_message` answers what is wrong, naming the
  field (`pipeline_event.state: unknown value 99`), for a value no agent of
  this version sends. The stream then ends with INVALID_ARGUMENT and that text.
- Rate: a `TokenBucket` per stream (`event_rate` messages/s, `event_burst` at
  once). Over it the hub does not drop or close anything: it waits before it
  reads the next message, so gRPC's flow control slows that one agent while
  every other stream is read as before.

Log levels stay lenient (an unknown level is stored as `info`): they are
words for people, not kinds the hub acts on.

Bytes that are not protobuf at all end the call with INVALID_ARGUMENT too: on
the agent stream `AgentServicer` catches the decode error; a unary request is
decoded by gRPC before any servicer runs, so `UndecodableRequests` (a server
interceptor) turns it into that status instead of gRPC's UNKNOWN and an
error with a traceback in the hub's log for each such call.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TYPE_CHECKING, Any, TypeAlias

import grpc
from google.protobuf.message import DecodeError
from grpc import aio

from console.settings import HubSettings
from proto import gamenode_pb2 as pb

__all__ = [
    "INSTANCE_STATES",
    "LOG_STREAMS",
    "MAX_AGENT_MESSAGE",
    "MAX_LOG_TEXT",
    "TokenBucket",
    "UndecodableRequests",
    "check_message",
    "pace",
]

MAX_AGENT_MESSAGE = 4 * 1024 * 1024
"""Bytes one message on the agent listener may hold (`grpc.max_receive_message_length`)."""
MAX_LOG_TEXT = 1024 * 1024
"""Bytes of line text (UTF-8) one log chunk may carry."""
LOG_STREAMS = frozenset({"", "stdout", "stderr"})
"""A log line's `stream`: empty for the agent's own lines, else the container's output stream."""
INSTANCE_STATES = frozenset({
    "", "created", "running", "paused", "restarting", "removing", "exited", "dead",  # docker's states
    "removed",  # the agent's word for a destroyed container
    "start", "die", "oom", "destroy",  # a docker event's action, when the container could not be inspected
})
"""An instance status's `state`: what `agent/runtime` reports for a container."""

if TYPE_CHECKING:
    _Handler: TypeAlias = grpc.RpcMethodHandler[Any, Any]  # generic only in the stubs

_STEP_STATES = frozenset(pb.StepState.values())


class TokenBucket:
    """`rate` tokens a second, at most `burst` saved; each message takes one.

    `take()` never refuses: past the burst the bucket goes into debt and
    answers how long to wait for it to be repaid, so a stream that keeps
    sending is read at `rate` messages a second, and the number read by time
    t is at most `burst + rate * t + 1`.
    """

    def __init__(self, rate: float, burst: float, clock: Callable[[], float] = time.monotonic) -> None:
        if rate <= 0 or burst < 1:
            raise ValueError(f"token bucket: rate must be > 0 and burst >= 1 (got {rate}, {burst})")
        self.rate = rate
        self.burst = float(burst)
        self.clock = clock
        self.tokens = self.burst
        self.stamp = clock()
        self.pauses = 0
        """How many times `take()` asked the reader to wait."""

    @classmethod
    def for_stream(cls, settings: HubSettings) -> TokenBucket:
        """A bucket for one agent stream, as the hub's settings say (`event_rate`, `event_burst`)."""
        return cls(settings.event_rate, settings.event_burst)

    def take(self) -> float:
        """Take one token; the seconds to wait before the next message (0.0: none)."""
        now = self.clock()
        self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate) - 1.0
        self.stamp = now
        if self.tokens >= 0:
            return 0.0
        self.pauses += 1
        return -self.tokens / self.rate


async def pace(bucket: TokenBucket, log: logging.Logger | logging.LoggerAdapter[Any]) -> None:
    """After each message read: wait out the bucket's debt, if any (back-pressure; said once per stream)."""
    pause = bucket.take()
    if pause <= 0:
        return
    if bucket.pauses == 1:
        log.warning("over %g messages/s (burst %d): reading this stream slower", bucket.rate, bucket.burst)
    await asyncio.sleep(pause)


def check_message(message: pb.AgentMessage) -> str | None:
    """What is wrong with an agent message, naming the field; None when it may be handled."""
    kind = message.WhichOneof("body")
    if kind == "pipeline_event":
        return _check_pipeline_event(message.pipeline_event)
    if kind == "log_chunk":
        return _check_log_chunk(message.log_chunk)
    if kind == "instance_report":
        return _check_instance_report(message.instance_report)
    return None


def _check_pipeline_event(event: pb.PipelineEvent) -> str | None:
    if event.state not in _STEP_STATES:
        return f"pipeline_event.state: unknown value {event.state} (expected one of {', '.join(pb.StepState.keys())})"
    return None


def _check_log_chunk(chunk: pb.LogChunk) -> str | None:
    source = chunk.source
    if source != "agent" and not source.startswith(("run:", "instance:")):  # the id is checked where it is stored
        return (f"log_chunk.source: unknown kind {_short(source)} "
                "(expected agent, run:<id> or instance:<id>)")
    for i, line in enumerate(chunk.lines):
        if line.stream not in LOG_STREAMS:
            return (f"log_chunk.lines[{i}].stream: unknown value {_short(line.stream)} "
                    "(expected stdout, stderr or empty)")
    size = _text_over_limit(chunk)
    if size is not None:
        return (f"log_chunk.lines: {size} bytes of line text, over the limit of {MAX_LOG_TEXT} bytes "
                "(1 MiB) a chunk may carry")
    return None


def _text_over_limit(chunk: pb.LogChunk) -> int | None:
    """The UTF-8 bytes of the chunk's line text when over `MAX_LOG_TEXT`, else None.

    Counting characters is enough while they could not reach the limit even at 4 bytes each (every chunk a
    real agent sends); only bigger chunks are encoded.
    """
    chars = sum(len(line.text) for line in chunk.lines)
    if chars * 4 <= MAX_LOG_TEXT:
        return None
    size = sum(len(line.text.encode("utf-8", "surrogatepass")) for line in chunk.lines)
    return size if size > MAX_LOG_TEXT else None


def _check_instance_report(report: pb.InstanceReport) -> str | None:
    for i, status in enumerate(report.instances):
        if status.state not in INSTANCE_STATES:
            known = ", ".join(sorted(s for s in INSTANCE_STATES if s))
            return f"instance_report.instances[{i}].state: unknown value {_short(status.state)} (expected {known})"
    return None


def _short(value: str) -> str:
    """`value` quoted, cut to 40 characters: it goes into a status message and a log line."""
    return repr(value if len(value) <= 40 else value[:40] + "…")


# --- requests that are not protobuf -------------------------------------------------------------


class _Undecodable:
    """What a request that failed to decode becomes, so that the call can end with a status."""

    def __init__(self, error: DecodeError) -> None:
        self.reason = f"the request is not a valid message: {error}"


class UndecodableRequests(aio.ServerInterceptor):
    """Unary requests that are not protobuf end with INVALID_ARGUMENT (not UNKNOWN and a logged traceback)."""

    async def intercept_service(
        self, continuation: Callable[[grpc.HandlerCallDetails], Awaitable[_Handler | None]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> _Handler | None:
        handler = await continuation(handler_call_details)
        if handler is None or handler.request_streaming or handler.request_deserializer is None:
            return handler  # unknown methods, and streams: those read (and check) each message themselves
        return _guarded(handler)


def _guarded(handler: _Handler) -> _Handler:
    decode = handler.request_deserializer
    assert decode is not None

    def tolerant(data: bytes) -> Any:
        try:
            return decode(data)
        except DecodeError as exc:
            return _Undecodable(exc)

    if not handler.response_streaming:
        assert handler.unary_unary is not None
        return grpc.unary_unary_rpc_method_handler(
            _unary(handler.unary_unary), request_deserializer=tolerant, response_serializer=handler.response_serializer)
    assert handler.unary_stream is not None
    return grpc.unary_stream_rpc_method_handler(
        _streaming(handler.unary_stream), request_deserializer=tolerant,
        response_serializer=handler.response_serializer)


def _unary(behavior: Callable[[Any, Any], Awaitable[Any]]) -> Callable[[Any, Any], Awaitable[Any]]:
    async def call(request: Any, context: aio.ServicerContext[Any, Any]) -> Any:
        if isinstance(request, _Undecodable):
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, request.reason)
        return await behavior(request, context)

    return call


def _streaming(behavior: Callable[[Any, Any], Any]) -> Callable[[Any, Any], Any]:
    if not inspect.isasyncgenfunction(behavior):  # writes with context.write() and returns
        return _unary(behavior)

    async def call(request: Any, context: aio.ServicerContext[Any, Any]) -> AsyncIterator[Any]:
        if isinstance(request, _Undecodable):
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, request.reason)
        async for answer in behavior(request, context):
            yield answer

    return call
