"""Logs the hub collected from its agents: pipeline runs, instances' containers, agents.

The app serves these routes when `app.state.logs` holds the hub's `LogService`
(503 otherwise): `app.state.logs = service; app.include_router(logs.router)`.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request

from console.errors import Unavailable
from console.models import Model
from console.service.logs import LogQuery, LogService
from console.store.logs import LogRecord

__all__ = ["LogEntriesAnswer", "LogEntryAnswer", "Logs", "entry_answer", "router"]

router = APIRouter(prefix="/api/v1/logs", tags=["logs"])


def _logs(request: Request) -> LogService:
    service: LogService | None = getattr(request.app.state, "logs", None)
    if service is None:
        raise Unavailable("this API is not served by a hub that collects logs")
    return service


Logs = Annotated[LogService, Depends(_logs)]


class LogEntryAnswer(Model):
    at: datetime
    node_id: str
    source: str
    """`agent`, `run:<id>` or `instance:<id>`."""
    level: str
    stream: str
    """`stdout` / `stderr` for container output; empty otherwise."""
    text: str


class LogEntriesAnswer(Model):
    entries: list[LogEntryAnswer]
    """Oldest first."""
    count: int


def entry_answer(record: LogRecord) -> LogEntryAnswer:
    return LogEntryAnswer(at=record.at, node_id=record.node, source=record.source, level=record.level,
                          stream=record.stream, text=record.text)


@router.get("", summary="Query stored log lines")
def query_logs(logs: Logs, query: Annotated[LogQuery, Query()]) -> LogEntriesAnswer:
    """The last `limit` (default 1000, at most 10000) matching lines, oldest first. `instance` and `run`
    select sources (given both, lines of either); `q` is a substring of the text, or a regular expression
    with `regex=true`; `level` the lowest level shown; `since`/`until` ISO 8601 or a duration back from
    now (`10m`, `2h`, `1d`)."""
    entries = [entry_answer(r) for r in logs.query(query)]
    return LogEntriesAnswer(entries=entries, count=len(entries))
