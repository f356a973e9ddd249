"""Pure-ASGI middleware: JSON bodies whatever curl says, a cap on request body bytes (413), request metrics.

Pure ASGI rather than BaseHTTPMiddleware so the route can still await http.disconnect on `receive`.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from server.errors import error_response


class JsonBodies:
    """Reads POST bodies as JSON when the client sent no content type or curl's default form type.

    `curl -d '{"prompt": ...}'` labels its body application/x-www-form-urlencoded. This API has no
    form endpoints, so such a body can only be meant as JSON; any other declared type is left alone
    (and gets FastAPI's clear 422 if it is not JSON).
    """

    FORM_OR_NONE = (b"", b"application/x-www-form-urlencoded")

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "POST":
            headers = [(k, v) for k, v in scope["headers"] if k != b"content-type"]
            declared = dict(scope["headers"]).get(b"content-type", b"").split(b";")[0].strip().lower()
            if declared in self.FORM_OR_NONE:
                scope = {**scope, "headers": [*headers, (b"content-type", b"application/json")]}
        await self.app(scope, receive, send)


class BodySizeLimit:
    """Reads a request body up to max_bytes (Content-Length checked first, chunked bodies counted), else 413."""

    def __init__(self, app: ASGIApp, max_bytes: int, on_reject: Callable[[str], None] | None = None) -> None:
        self.app, self.max_bytes, self.on_reject = app, max_bytes, on_reject

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] in ("GET", "HEAD", "OPTIONS"):
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > self.max_bytes):
            await self._too_large(scope, receive, send)
            return
        chunks, total = [], 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunk = message.get("body", b"")
            total += len(chunk)
            if total > self.max_bytes:
                await self._too_large(scope, receive, send)
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body, replayed = b"".join(chunks), False

        async def replay() -> Message:
            # The whole body once, then the server's own receive (which reports http.disconnect).
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)

    async def _too_large(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.on_reject is not None:
            self.on_reject("too_large")
        message = f"body: request body exceeds {self.max_bytes} bytes"
        # Close the connection: the unread rest of the body must not be parsed as the next request.
        response = error_response(413, "payload_too_large", message, "body", headers={"Connection": "close"})
        await response(scope, receive, send)


class RequestTimer:
    """Observes the wall time and status of every request to the generation endpoints."""

    def __init__(self, app: ASGIApp, observe: Callable[[str, int, float], None], paths: tuple[str, ...]) -> None:
        self.app, self.observe, self.paths = app, observe, paths

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] not in self.paths:
            await self.app(scope, receive, send)
            return
        start, status = time.perf_counter(), 500

        async def record_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, record_status)
        finally:
            self.observe(scope["path"], status, time.perf_counter() - start)
