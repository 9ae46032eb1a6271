"""QueryLogs / TailLogs (`console.hub.log_rpc`) over a real gRPC server on 127.0.0.1:0."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.protobuf import timestamp_pb2
from grpc import aio

from console.hub.log_rpc import query_logs, tail_logs
from console.service.logs import LogService
from console.store.logs import LogStore
from proto import gamenode_pb2 as pb
from proto import gamenode_pb2_grpc as pb_grpc

T0 = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
WAIT = 10.0


def ts(seconds: float) -> timestamp_pb2.Timestamp:
    out = timestamp_pb2.Timestamp()
    out.FromDatetime(T0 + timedelta(seconds=seconds))
    return out


def chunk(source: str, *texts: str, level: str = "info", start: int = 0) -> pb.LogChunk:
    return pb.LogChunk(source=source, lines=[pb.LogLine(at=ts(start + i), level=level, text=t)
                                             for i, t in enumerate(texts)])


class Servicer(pb_grpc.HubServiceServicer):
    def __init__(self, service: LogService) -> None:
        self.service = service

    async def QueryLogs(self, request: pb.LogQuery, context: Any) -> pb.LogEntries:
        return await query_logs(self.service, request, context)

    async def TailLogs(self, request: pb.LogQuery, context: Any) -> AsyncIterator[pb.LogEntries]:
        async for message in tail_logs(self.service, request, context):
            yield message


@pytest.fixture
async def service(tmp_path: Path) -> AsyncIterator[LogService]:
    service = LogService(LogStore(tmp_path / "logs"))
    yield service
    await asyncio.to_thread(service.close)


@pytest.fixture
async def stub(service: LogService) -> AsyncIterator[pb_grpc.HubServiceStub]:
    server = aio.server()
    pb_grpc.add_HubServiceServicer_to_server(Servicer(service), server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    channel = aio.insecure_channel(f"127.0.0.1:{port}")
    yield pb_grpc.HubServiceStub(channel)
    await channel.close()
    await server.stop(0)


async def test_query_logs_answers_the_filtered_entries(service: LogService, stub: pb_grpc.HubServiceStub) -> None:
    service.append("n1", chunk("run:r1", "pull", "pulled"))
    service.append("n1", chunk("instance:i1", "oops", level="error", start=5))
    answer = await stub.QueryLogs(pb.LogQuery(node_id="n1", level="error"))
    assert [(e.node_id, e.source, e.level, e.text) for e in answer.entries] == [("n1", "instance:i1", "error", "oops")]
    assert answer.entries[0].at == ts(5)
    answer = await stub.QueryLogs(pb.LogQuery(since=ts(1), until=ts(1)))
    assert [e.text for e in answer.entries] == ["pulled"]
    answer = await stub.QueryLogs(pb.LogQuery(limit=1))
    assert [e.text for e in answer.entries] == ["oops"]


@pytest.mark.parametrize("request_", [pb.LogQuery(q="(", regex=True), pb.LogQuery(level="loud"),
                                      pb.LogQuery(run_id="../x"), pb.LogQuery(limit=20_000)])
async def test_bad_queries_are_invalid_argument(stub: pb_grpc.HubServiceStub, request_: pb.LogQuery) -> None:
    with pytest.raises(aio.AioRpcError) as exc:
        await stub.QueryLogs(request_)
    assert exc.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    with pytest.raises(aio.AioRpcError) as exc:
        await anext(aiter(stub.TailLogs(request_)))
    assert exc.value.code() == grpc.StatusCode.INVALID_ARGUMENT


async def test_tail_logs_streams_matching_lines_after_an_empty_first_message(
    service: LogService, stub: pb_grpc.HubServiceStub
) -> None:
    call = stub.TailLogs(pb.LogQuery(run_id="r1"))
    first = await asyncio.wait_for(call.read(), WAIT)
    assert first == pb.LogEntries()
    service.append("n1", chunk("run:r2", "not this one"))
    service.append("n1", chunk("run:r1", "step 1", "step 2"))
    got: list[str] = []
    while len(got) < 2:
        message = await asyncio.wait_for(call.read(), WAIT)
        assert message.dropped == 0
        got += [e.text for e in message.entries]
    assert got == ["step 1", "step 2"]
    assert service.stats().tails == 1
    call.cancel()
    for _ in range(1000):  # the server sees the cancel and closes the subscription
        if service.stats().tails == 0:
            break
        await asyncio.sleep(0.01)
    assert service.stats().tails == 0


async def test_a_tail_ends_when_the_service_closes(service: LogService, stub: pb_grpc.HubServiceStub) -> None:
    call = stub.TailLogs(pb.LogQuery())
    await asyncio.wait_for(call.read(), WAIT)
    await asyncio.to_thread(service.close)
    assert await asyncio.wait_for(call.read(), WAIT) is aio.EOF
    assert await call.code() == grpc.StatusCode.OK
