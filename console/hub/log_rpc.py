"""`HubService.QueryLogs` / `TailLogs` over the `LogService`; `HubServicer` delegates to these.

`TailLogs` first answers one empty `LogEntries` (the tail is live from then
on: lines appended after it arrive), then batches of matching lines as they
come, each with `dropped`: the lines this reader missed since the previous
message because it read too slowly. A tail filters like a query (`since` and
`until` included) and ignores `limit`; it never sends what came before it:
for that, open the tail, then call `QueryLogs`, and drop what both answer.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

from google.protobuf import timestamp_pb2
from grpc import aio

from console.errors import GamenodeError
from console.hub.convert import datetime_from_pb, timestamp
from console.hub.errors import grpc_status
from console.service.logs import LogQuery, LogService
from console.store.logs import DEFAULT_LIMIT, LogRecord
from console.validation import validate
from proto import gamenode_pb2 as pb

__all__ = ["entry_to_pb", "query_from_pb", "query_logs", "tail_logs"]

Context = aio.ServicerContext[Any, Any]


def query_from_pb(request: pb.LogQuery) -> LogQuery:
    """The request as a `LogQuery`; InvalidInput with field paths (empty fields mean "any")."""
    return validate(LogQuery, {
        "node": request.node_id or None, "instance": request.instance_id or None, "run": request.run_id or None,
        "since": _time(request, "since"), "until": _time(request, "until"),
        "q": request.q or None, "regex": request.regex, "level": request.level or None,
        "limit": request.limit or DEFAULT_LIMIT,
    }, "log query")


def entry_to_pb(record: LogRecord) -> pb.LogEntry:
    return pb.LogEntry(at=timestamp(record.at), node_id=record.node, source=record.source, level=record.level,
                       stream=record.stream, text=record.text)


async def query_logs(service: LogService, request: pb.LogQuery, context: Context) -> pb.LogEntries:
    """QueryLogs: the last `limit` matching entries, oldest first (read in a worker thread)."""
    try:
        query = query_from_pb(request)
        records = await asyncio.to_thread(service.query, query)
    except GamenodeError as exc:
        await context.abort(grpc_status(exc), exc.message)
    return await asyncio.to_thread(_entries, records)


async def tail_logs(service: LogService, request: pb.LogQuery, context: Context) -> AsyncIterator[pb.LogEntries]:
    """TailLogs: an empty message once subscribed, then batches of matching lines as they arrive."""
    try:
        query = query_from_pb(request)
        subscription = service.subscribe(query)
    except GamenodeError as exc:
        await context.abort(grpc_status(exc), exc.message)
    with subscription:
        yield pb.LogEntries()
        while (batch := await subscription.next_batch()) is not None:
            yield pb.LogEntries(entries=[entry_to_pb(r) for r in batch.entries], dropped=batch.dropped)


def _entries(records: list[LogRecord]) -> pb.LogEntries:
    return pb.LogEntries(entries=[entry_to_pb(r) for r in records])


def _time(request: pb.LogQuery, name: str) -> Any:
    if not request.HasField(name):
        return None
    ts: timestamp_pb2.Timestamp = getattr(request, name)
    return datetime_from_pb(ts)
