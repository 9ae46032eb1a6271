"""The OpenAPI description's error answers (`console.hub.openapi`): as the hub sends them, on every route."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from console.hub.app import create_app
from console.hub.auth import OPEN_PATHS, route_roles
from console.hub.openapi import ErrorBody
from console.models import Role
from console.service import Services
from console.store import Stores


@pytest.fixture
def app(tmp_path: Path) -> Iterator[FastAPI]:
    stores = Stores.open(tmp_path / "data")
    yield create_app(Services.over(stores))
    stores.close()


def operations(schema: dict[str, Any]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    for path, item in schema["paths"].items():
        for method, operation in item.items():
            yield method.upper(), path, operation


def test_every_route_served_is_described(app: FastAPI) -> None:
    """What schemathesis fuzzes (tests/integration/test_rest_openapi_fuzz.py) is every route there is."""
    described = {(method, path) for method, path, _ in operations(app.openapi())}
    served = {key for key in route_roles(app) if key[1] not in OPEN_PATHS} | {("GET", "/healthz")}
    assert served <= described


def test_every_operation_documents_the_error_shape(app: FastAPI) -> None:
    schema = app.openapi()
    roles = route_roles(app)
    error = {"$ref": "#/components/schemas/ErrorBody"}
    for method, path, operation in operations(schema):
        responses = operation["responses"]
        where = f"{method} {path}"
        assert responses["default"]["content"]["application/json"]["schema"] == error, where
        if "422" in responses:
            assert responses["422"]["content"]["application/json"]["schema"] == error, where
        if path in OPEN_PATHS:
            assert "401" not in responses, where
            continue
        assert responses["401"]["content"]["application/json"]["schema"] == error, where
        role = roles[(method, path)]
        assert ("403" in responses) is (role is not None and role is not Role.VIEWER), where
    assert "HTTPValidationError" not in schema["components"]["schemas"]  # FastAPI's 422, never sent
    assert schema["components"]["schemas"]["ErrorBody"]["required"] == ["error", "message", "details"]


def test_the_description_is_built_once(app: FastAPI) -> None:
    assert app.openapi() is app.openapi()


async def test_an_error_answer_matches_the_documented_shape(app: FastAPI) -> None:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as client:
        missing = await client.get("/api/v1/nodes/nope")
        invalid = await client.get("/api/v1/nodes", params={"limit": "-1"})
    assert missing.status_code == 404 and invalid.status_code == 422
    for answer in (missing, invalid):
        ErrorBody.model_validate(answer.json())
    assert ErrorBody.model_validate(invalid.json()).details[0].path
