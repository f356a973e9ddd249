"""Pure-ASGI middleware: JSON bodies only (415), allowed Host headers, a cap on request body bytes (413), HEAD as GET,
metrics.

Pure ASGI rather than BaseHTTPMiddleware so the route can still await http.disconnect on `receive`.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Collection, Sequence

from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from server.errors import error_response


class RequireJson:
    """415 for a request body that is not declared application/json (or a +json type), or is declared compressed
    (Content-Encoding), before it is read.

    Every POST route here takes JSON, and a browser sends a cross-site form post (form-urlencoded, multipart,
    text/plain) without asking the server first: refusing those types is what stops a page from making its
    visitors' browsers run generations here. JSON from another origin needs a CORS preflight, which is refused
    unless cors_origins allows that origin.
    """

    def __init__(self, app: ASGIApp, paths: Collection[str], on_reject: Callable[[str], None] | None = None) -> None:
        self.app, self.paths, self.on_reject = app, frozenset(paths), on_reject  # paths: the JSON POST routes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        # Other methods and paths go on to the router's own 405 and 404.
        if scope["type"] == "http" and scope["method"] == "POST" and scope["path"] in self.paths:
            headers = dict(scope["headers"])
            declared = headers.get(b"content-type", b"").split(b";")[0].strip().lower()
            encoded = headers.get(b"content-encoding", b"identity").strip().lower()
            if declared != b"application/json" and not (
                declared.startswith(b"application/") and declared.endswith(b"+json")
            ):
                shown = declared.decode("latin-1")[:100] or "none"
                message = f"content-type: the body must be sent as application/json, not {shown}"
                await self._refuse(message, "content-type", scope, receive, send)
                return
            if encoded != b"identity":  # a compressed body would be read as (not UTF-8) JSON
                shown = encoded.decode("latin-1")[:100]
                message = f"content-encoding: {shown} is not accepted; send the JSON body uncompressed"
                await self._refuse(message, "content-encoding", scope, receive, send)
                return
        await self.app(scope, receive, send)

    async def _refuse(self, message: str, field: str, scope: Scope, receive: Receive, send: Send) -> None:
        if self.on_reject is not None:
            self.on_reject("unsupported_media_type")
        await error_response(415, "unsupported_media_type", message, field)(scope, receive, send)


class AllowedHosts:
    """Starlette's TrustedHostMiddleware (its Host matching, *.example.com wildcards), answering in the one error
    format; the probes and /metrics stay reachable by any Host (kubelets and Prometheus call a pod by its IP)."""

    def __init__(self, app: ASGIApp, allowed_hosts: Sequence[str], open_paths: Collection[str] = ()) -> None:
        self.app, self.open_paths = app, frozenset(open_paths)
        self._check = TrustedHostMiddleware(_mark_allowed, allowed_hosts=list(allowed_hosts), www_redirect=False)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in self.open_paths:
            await self.app(scope, receive, send)
            return
        probe = dict(scope)  # Starlette's check passes it on to _mark_allowed only when the host is allowed

        async def drop(message: Message) -> None:  # its own plain-text refusal is replaced below
            pass

        await self._check(probe, receive, drop)
        if probe.get(_ALLOWED):
            await self.app(scope, receive, send)
            return
        host = dict(scope["headers"]).get(b"host", b"").decode("latin-1")[:100] or "none"
        message = f"host: {host!r} is not served here (allowed_hosts)"
        await error_response(400, "invalid_host", message, "host")(scope, receive, send)


_ALLOWED = "scott.host_allowed"


async def _mark_allowed(scope: Scope, receive: Receive, send: Send) -> None:
    scope[_ALLOWED] = True


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


class HeadAsGet:
    """HEAD is GET without the body (RFC 9110 9.3.2), on every route that answers GET: FastAPI's routes answer only
    the methods they name, and a monitor's HEAD /healthz was a 405."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "HEAD":
            await self.app(scope, receive, send)
            return

        async def headers_only(message: Message) -> None:  # Content-Length stays: the GET body's size
            await send({**message, "body": b""} if message["type"] == "http.response.body" else message)

        await self.app({**scope, "method": "GET"}, receive, headers_only)


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
