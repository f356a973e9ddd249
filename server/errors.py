"""One error format for every failure: {"error": {"type", "message", "field", "errors"}}, naming field and limit."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from server.schemas import ErrorDetail, ErrorResponse, FieldError

_PATHS = re.compile(r"(?:/[^\s/]+)+/([^\s/]+)")  # an absolute path -> its last part


def without_paths(text: str) -> str:
    """Text for a client: server file paths cut to their last part (the log keeps the whole)."""
    return _PATHS.sub(r"\1", text)


_STATUS_HELP = {
    400: "malformed JSON, or a value refused with its reason",
    401: "no valid API key (only when the server has keys: Authorization: Bearer KEY)",
    404: "not served here",
    406: "Accept: image/png with more than one image",
    413: "the body is over the server's max_body_bytes",
    415: "the body is not declared application/json",
    422: "a field out of its limits (the message names it and the limit)",
    429: "at capacity, or the API key has its most requests in flight (Retry-After says when to retry)",
    503: "the model is loading, failed to load, or the server is shutting down",
    504: "the request's deadline passed",
}


def documented(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """A route's `responses=`: each error status it can answer, in the one error format, with what it means."""
    return {status: {"model": ErrorResponse, "description": _STATUS_HELP[status]} for status in statuses}


class ApiError(Exception):
    """A failure the client should see, with its status, a stable type, and the field at fault."""

    def __init__(
        self,
        status: int,
        type: str,
        message: str,
        field: str | None = None,
        headers: Mapping[str, str] | None = None,
        reason: str = "invalid",
    ) -> None:
        super().__init__(message)
        self.status, self.type, self.message, self.field = status, type, message, field
        self.headers = dict(headers or {})
        self.reason = reason  # the rejection reason counted in metrics


def error_response(
    status: int,
    type: str,
    message: str,
    field: str | None = None,
    errors: Sequence[FieldError] = (),
    headers: Mapping[str, str] | None = None,
) -> JSONResponse:
    if status >= 500:  # a server failure's text comes from an exception: never show where the server's files are
        message = without_paths(message)
    if not errors and field is not None:
        errors = [FieldError(field=field, message=message)]
    body = ErrorResponse(error=ErrorDetail(type=type, message=message, field=field, errors=list(errors)))
    return JSONResponse(body.model_dump(), status_code=status, headers=dict(headers or {}))


def describe_validation_error(error: Mapping[str, Any]) -> FieldError:
    """A pydantic error -> the field's dotted name and a message that names it (pydantic's text carries the limit)."""
    loc = [str(part) for part in error.get("loc", ()) if part != "body"]
    field = ".".join(loc) or "body"
    kind, msg = error.get("type", ""), str(error.get("msg", "invalid"))
    if kind == "json_invalid":
        reason = (error.get("ctx") or {}).get("error", "malformed")
        return FieldError(field="body", message=f"body is not valid JSON: {reason}")
    if kind == "missing":
        return FieldError(field=field, message=f"{field} is required")
    if kind == "extra_forbidden":
        return FieldError(field=field, message=f"{field} is not a known field")
    return FieldError(field=field, message=f"{field}: {msg}")


def install_error_handlers(app: FastAPI, on_reject: Callable[[str], None]) -> None:
    """Route FastAPI's validation errors, HTTP errors and ApiErrors through the one format."""

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [describe_validation_error(e) for e in exc.errors()]
        first = errors[0] if errors else FieldError(field="body", message="invalid request")
        malformed = any(e.get("type") == "json_invalid" for e in exc.errors())
        on_reject("invalid")
        return error_response(400 if malformed else 422, "invalid_request", first.message, first.field, errors)

    @app.exception_handler(ApiError)
    async def _api_error(request: Request, exc: ApiError) -> JSONResponse:
        on_reject(exc.reason)
        return error_response(exc.status, exc.type, exc.message, exc.field, headers=exc.headers)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        # No traceback, environment or path for the client; uvicorn logs the exception with its traceback.
        return error_response(500, "internal_error", "internal server error (the server log has the detail)")

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        kind = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        return error_response(exc.status_code, kind, str(exc.detail), headers=exc.headers)
