"""`GET /api/v1/logs` over a LogService: filters, limits, 422 naming the field, 503 without logs."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from google.protobuf import timestamp_pb2

from console.hub.api import logs
from console.hub.errors import install_error_handlers
from console.service.logs import LogService
from console.store.logs import LogStore
from proto import gamenode_pb2 as pb

T0 = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)


def line(seconds: int, text: str, level: str = "info", stream: str = "") -> pb.LogLine:
    at = timestamp_pb2.Timestamp()
    at.FromDatetime(T0 + timedelta(seconds=seconds))
    return pb.LogLine(at=at, level=level, text=text, stream=stream)


@pytest.fixture
def service(tmp_path: Path) -> Iterator[LogService]:
    service = LogService(LogStore(tmp_path / "logs"))
    service.append("n1", pb.LogChunk(source="run:r1", lines=[line(1, "pull game:1"), line(2, "pulled")]))
    service.append("n1", pb.LogChunk(source="instance:i1", lines=[
        line(3, "listening on :8080", stream="stdout"), line(4, "disk at 91%", "warning", "stderr")]))
    service.append("n2", pb.LogChunk(source="agent", lines=[line(5, "agent up")]))
    yield service
    service.close()


def make_app(service: LogService | None) -> FastAPI:
    app = FastAPI()
    install_error_handlers(app)
    app.state.logs = service
    app.include_router(logs.router)
    return app


@pytest.fixture
async def client(service: LogService) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=make_app(service))
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        yield client


async def get(client: httpx.AsyncClient, **params: Any) -> list[str]:
    answer = await client.get("/api/v1/logs", params=params)
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["count"] == len(body["entries"])
    return [e["text"] for e in body["entries"]]


async def test_entries_have_every_field(client: httpx.AsyncClient) -> None:
    answer = await client.get("/api/v1/logs", params={"instance": "i1", "level": "warning"})
    assert answer.json() == {"count": 1, "entries": [{
        "at": "2024-05-01T12:00:04Z", "node_id": "n1", "source": "instance:i1", "level": "warning",
        "stream": "stderr", "text": "disk at 91%",
    }]}


@pytest.mark.parametrize(("params", "expected"), [
    ({}, ["pull game:1", "pulled", "listening on :8080", "disk at 91%", "agent up"]),
    ({"node": "n2"}, ["agent up"]),
    ({"run": "r1"}, ["pull game:1", "pulled"]),
    ({"run": "r1", "instance": "i1"}, ["pull game:1", "pulled", "listening on :8080", "disk at 91%"]),
    ({"since": "2024-05-01T12:00:02Z", "until": "2024-05-01T12:00:03"}, ["pulled", "listening on :8080"]),
    ({"since": "2024-05-01T14:00:02+02:00"}, ["pulled", "listening on :8080", "disk at 91%", "agent up"]),
    ({"since": "1h"}, []),
    ({"q": "pull"}, ["pull game:1", "pulled"]),
    ({"q": r"\d+%$", "regex": "true"}, ["disk at 91%"]),
    ({"level": "warn"}, ["disk at 91%"]),
    ({"limit": 2}, ["disk at 91%", "agent up"]),
])
async def test_filters(client: httpx.AsyncClient, params: dict[str, Any], expected: list[str]) -> None:
    assert await get(client, **params) == expected


@pytest.mark.parametrize(("params", "field"), [
    ({"q": "([", "regex": "true"}, "q"),
    ({"level": "loud"}, "level"),
    ({"limit": 0}, "limit"),
    ({"limit": 10001}, "limit"),
    ({"since": "last week"}, "since"),
    ({"node": "../../etc"}, "node"),
    ({"instance": "a/b"}, "instance"),
    ({"bogus": "1"}, "bogus"),
])
async def test_bad_input_is_422_naming_the_field(
    client: httpx.AsyncClient, params: dict[str, Any], field: str
) -> None:
    answer = await client.get("/api/v1/logs", params=params)
    assert answer.status_code == 422, answer.text
    body = answer.json()
    assert body["error"] == "invalid_input"
    assert [d["path"] for d in body["details"]] == [f"query.{field}"]


async def test_a_hub_without_logs_answers_503() -> None:
    transport = httpx.ASGITransport(app=make_app(None))
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        answer = await client.get("/api/v1/logs")
    assert answer.status_code == 503
    assert answer.json()["error"] == "unavailable"
