"""One error format for every failure: {"error": {"type", "message", "field", "errors"}}, naming field and limit."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from server.limits import clip
from server.schemas import ErrorDetail, ErrorResponse, FieldError

_PATHS = re.compile(r"(?:/[^\s/]+)+/([^\s/]+)")  # an absolute path -> its last part
MAX_LISTED_ERRORS = 10  # of a body with many errors: ten listed and the count (a flood of unknown keys: schemas)


def without_paths(text: str) -> str:
    """Text for a client: server file paths cut to their last part (the log keeps the whole)."""
    return _PATHS.sub(r"\1", text)


_STATUS_HELP = {
    400: "malformed JSON, or a value refused with its reason",
    401: "no valid API key (only when the server has keys: Authorization: Bearer KEY)",
    404: "not served here",
    406: "Accept: image/png with more than one image",
    413: "the body is over the server's max_body_bytes",
    415: "the body is not declared application/json, or is declared compressed (Content-Encoding)",
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
    field = clip(".".join(loc)) or "body"
    kind, msg = error.get("type", ""), str(error.get("msg", "invalid"))
    if kind == "json_invalid":
        reason = (error.get("ctx") or {}).get("error", "malformed")
        return FieldError(field="body", message=f"body is not valid JSON: {reason}")
    if kind == "missing":
        return FieldError(field=field, message=f"{field} is required")
    if kind == "extra_forbidden":
        return FieldError(field=field, message=f"{field} is not a known field")
    return FieldError(field=field, message=f"{field}: {msg}")


def _unparsable(cause: Exception) -> dict[str, Any]:
    """A body the JSON parser gave up on for a reason other than its syntax -> a pydantic-style json_invalid error."""
    if isinstance(cause, RecursionError):
        reason = "nested too deeply"
    elif isinstance(cause, UnicodeDecodeError):
        reason = f"not UTF-8 ({cause.reason} at byte {cause.start})"
    else:  # e.g. "Exceeds the limit (4300 digits) for integer string conversion", without Python's advice after it
        reason = str(cause).split(":")[0]
    return {"type": "json_invalid", "loc": ("body",), "ctx": {"error": reason}}


def _invalid(errors: Sequence[Mapping[str, Any]]) -> JSONResponse:
    """400 for a body that is not JSON, else 422; the first MAX_LISTED_ERRORS listed, and how many there were."""
    listed = [describe_validation_error(e) for e in errors[:MAX_LISTED_ERRORS]]
    first = listed[0] if listed else FieldError(field="body", message="invalid request")
    message = first.message
    if len(errors) > len(listed):
        message += f" ({len(errors)} errors in all; the first {len(listed)} are listed)"
    malformed = any(e.get("type") == "json_invalid" for e in errors[:1])  # a body not parsed has that one error
    return error_response(400 if malformed else 422, "invalid_request", message, first.field, listed)


def install_error_handlers(app: FastAPI, on_reject: Callable[[str], None]) -> None:
    """Route FastAPI's validation errors, HTTP errors and ApiErrors through the one format."""

    @app.exception_handler(RequestValidationError)
    async def _invalid_request(request: Request, exc: RequestValidationError) -> JSONResponse:
        on_reject("invalid")
        return _invalid(exc.errors())

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
        # What json.loads raises besides a JSONDecodeError (a 5,000-digit number, bytes that are not UTF-8, nesting
        # deeper than the parser goes) FastAPI turns into a bare 400 "error parsing the body", chained to the error.
        if exc.status_code == 400 and isinstance(exc.__cause__, ValueError | RecursionError):
            on_reject("invalid")
            return _invalid([_unparsable(exc.__cause__)])
        if exc.status_code == 404:
            message = f"path: {clip(request.url.path)!r} is not served here"
            return error_response(404, "not_found", message, "path", headers=exc.headers)
        if exc.status_code == 405:
            allowed = (exc.headers or {}).get("Allow", "")
            message = f"method: {request.method} is not allowed on {clip(request.url.path)!r}; allowed: {allowed}"
            return error_response(405, "method_not_allowed", message, "method", headers=exc.headers)
        return error_response(exc.status_code, "http_error", str(exc.detail), headers=exc.headers)
