"""The error answers in the REST API's OpenAPI description, as the hub sends them.

FastAPI documents only a route's success and a 422 shaped like its own
`HTTPValidationError`; the hub answers every error, 422 included, as
`{error, message, details}` (`console.hub.errors`), and any protected route may
answer 401, and one that needs more than a viewer 403. `document_errors(app)`
makes the description say so, for every operation:

- `401` (all but the open paths) and `403` (routes that need operator or admin);
- `422` with the hub's error shape instead of FastAPI's;
- `default`: any other error status (404, 409, 503, ...) in the same shape.

Clients generated from the description, and schemathesis, then read errors as
they are (tests/unit/console/hub/test_hub_openapi_fuzz.py holds every route to it).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from fastapi import FastAPI
from pydantic import BaseModel, ConfigDict

from console.hub.auth import OPEN_PATHS, route_roles
from console.models import Role

__all__ = ["ErrorBody", "ErrorDetail", "document_errors"]

_METHODS = frozenset({"get", "put", "post", "delete", "patch", "options", "head", "trace"})


class ErrorDetail(BaseModel):
    model_config = ConfigDict(extra="forbid")

    path: str
    """The field, e.g. `steps[2].with.image`, or the record (a node id) a conflict names."""
    message: str
    line: int | None = None
    """The line of a pipeline's YAML the problem is on."""


class ErrorBody(BaseModel):
    """Every error answer of the hub."""

    model_config = ConfigDict(extra="forbid")

    error: str
    """A stable code: not_found, conflict, invalid_input, unauthenticated, forbidden, unavailable, ..."""
    message: str
    details: list[ErrorDetail]


def document_errors(app: FastAPI) -> None:
    """Have `app.openapi()` describe the hub's error answers on every operation (built once, on first use)."""
    build: Callable[[], dict[str, Any]] = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = build()
            _add_errors(schema, route_roles(app))
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]  # FastAPI's documented way to change the schema


def _add_errors(schema: dict[str, Any], roles: dict[tuple[str, str], Role | None]) -> None:
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    components["ErrorDetail"] = ErrorDetail.model_json_schema()
    body = ErrorBody.model_json_schema(ref_template="#/components/schemas/{model}")
    body.pop("$defs", None)
    components["ErrorBody"] = body
    for path, operations in schema.get("paths", {}).items():
        for method, operation in operations.items():
            if method in _METHODS:
                _add_operation_errors(operation, path, roles.get((method.upper(), path)))
    if "#/components/schemas/HTTPValidationError" not in json.dumps(schema.get("paths", {})):
        for name in ("HTTPValidationError", "ValidationError"):  # FastAPI's 422, which the hub never sends
            components.pop(name, None)


def _add_operation_errors(operation: dict[str, Any], path: str, role: Role | None) -> None:
    responses: dict[str, Any] = operation.setdefault("responses", {})
    if path not in OPEN_PATHS:
        responses.setdefault("401", _error("No valid API token (`Authorization: Bearer TOKEN`)"))
        if role is not None and not Role.VIEWER.covers(role):
            responses.setdefault("403", _error(f"The token's role is lower than {role.value}"))
    if "422" in responses:
        responses["422"] = _error("Invalid input: each problem's field in `details`")
    responses.setdefault("default", _error("Any other error (not_found, conflict, unavailable, ...)"))


def _error(description: str) -> dict[str, Any]:
    return {"description": description,
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorBody"}}}}
