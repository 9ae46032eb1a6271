"""Errors as HTTP answers and as gRPC statuses, in one place.

Every error answer has the same JSON shape:

    {"error": "not_found", "message": "node 'n9' not found", "details": []}

`details` lists `{"path", "message"}` (and `line` for a pipeline's YAML) for invalid input, and for a conflict
that has them (e.g. each node a placement rejected, `path` = the node id). Bad input is a 4xx,
never a 500. Over gRPC the same error ends the call with `grpc_status(exc)`
and the message as details.

    code            HTTP   gRPC
    not_found       404    NOT_FOUND
    conflict        409    FAILED_PRECONDITION (ALREADY_EXISTS for AlreadyExists)
    invalid_input   422    INVALID_ARGUMENT
    unauthorized    401    UNAUTHENTICATED
    unauthenticated 401    UNAUTHENTICATED     no valid API token (`console.hub.auth`)
    forbidden       403    PERMISSION_DENIED   a role too low, a node enrolled with another key
    unavailable     503    UNAVAILABLE
    timeout         504    DEADLINE_EXCEEDED
    corrupt_data    500    DATA_LOSS
    error           500    INTERNAL
"""

from __future__ import annotations

import logging

import grpc
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from console.errors import AlreadyExists, Conflict, FieldError, GamenodeError, InvalidInput
from console.validation import format_loc

__all__ = ["GRPC_STATUS", "HTTP_STATUS", "error_body", "grpc_status", "install_error_handlers"]

log = logging.getLogger(__name__)

HTTP_STATUS: dict[str, int] = {
    "not_found": 404,
    "conflict": 409,
    "invalid_input": 422,
    "unauthorized": 401,
    "unauthenticated": 401,
    "forbidden": 403,
    "unavailable": 503,
    "timeout": 504,
    "corrupt_data": 500,
    "error": 500,
}

GRPC_STATUS: dict[str, grpc.StatusCode] = {
    "not_found": grpc.StatusCode.NOT_FOUND,
    "conflict": grpc.StatusCode.FAILED_PRECONDITION,
    "invalid_input": grpc.StatusCode.INVALID_ARGUMENT,
    "unauthorized": grpc.StatusCode.UNAUTHENTICATED,
    "unauthenticated": grpc.StatusCode.UNAUTHENTICATED,
    "forbidden": grpc.StatusCode.PERMISSION_DENIED,
    "unavailable": grpc.StatusCode.UNAVAILABLE,
    "timeout": grpc.StatusCode.DEADLINE_EXCEEDED,
    "corrupt_data": grpc.StatusCode.DATA_LOSS,
    "error": grpc.StatusCode.INTERNAL,
}


def grpc_status(exc: GamenodeError) -> grpc.StatusCode:
    if isinstance(exc, AlreadyExists):
        return grpc.StatusCode.ALREADY_EXISTS
    return GRPC_STATUS.get(exc.code, grpc.StatusCode.INTERNAL)


def error_body(code: str, message: str, details: list[FieldError] | None = None) -> dict[str, object]:
    return {
        "error": code,
        "message": message,
        "details": [_detail(d) for d in details or []],
    }


def _detail(error: FieldError) -> dict[str, object]:
    out: dict[str, object] = {"path": error.path, "message": error.message}
    if error.line is not None:
        out["line"] = error.line
    return out


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(GamenodeError)
    async def _gamenode(request: Request, exc: GamenodeError) -> JSONResponse:
        status = HTTP_STATUS.get(exc.code, 500)
        if status >= 500:
            log.error("%s %s: %s", request.method, request.url.path, exc.message)
        details = exc.details if isinstance(exc, InvalidInput | Conflict) else None
        return JSONResponse(error_body(exc.code, exc.message, details), status_code=status)

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        details = [FieldError(format_loc(e["loc"]), _message(e)) for e in exc.errors()]
        message = "invalid request: " + "; ".join(str(d) for d in details)
        return JSONResponse(error_body("invalid_input", message, details), status_code=422)

    @app.exception_handler(HTTPException)
    async def _http(request: Request, exc: HTTPException) -> JSONResponse:
        code = {400: "invalid_input", 404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "error")
        return JSONResponse(error_body(code, str(exc.detail)), status_code=exc.status_code,
                            headers=getattr(exc, "headers", None))


def _message(error: dict[str, object]) -> str:
    message = str(error.get("msg", "invalid"))
    if error.get("type") in ("enum", "literal_error", "string_pattern_mismatch") and "input" in error:
        message += f" (got {error['input']!r})"
    return message
