"""The HTTP/1.1 protocol `scott serve` runs: uvicorn's httptools protocol with a cap on the request head and a
deadline for receiving each request, enforced as bytes arrive, before anything reaches the app.

uvicorn alone bounds neither: httptools buffers a header of any size (concatenating its pieces, so one 128 MB
header held the event loop for seconds), and a client that sends a byte a second is never closed.
"""

from __future__ import annotations

import asyncio
import http
from collections.abc import Callable

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from server.errors import error_response

LINGER_S = 2.0  # after an early answer, how long the rest of a request is read and discarded before closing


class LimitedHttpProtocol(HttpToolsProtocol):
    """Answers 431 to a request line plus headers over max_head_bytes and 408 to a request not received within
    receive_timeout_s of its first byte (or of the connection, for its first request), then closes.

    Set the limits with `limited_protocol`; uvicorn makes one instance per connection.
    """

    max_head_bytes = 16 * 1024
    receive_timeout_s = 10.0
    on_reject: Callable[[str], None] = staticmethod(lambda reason: None)

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self._in_head = True  # the request line and headers of a request are arriving
        self._head_bytes = 0
        self._deadline: asyncio.TimerHandle | None = None  # of the request being received
        self._refused = False  # answered early and closing: what arrives now is discarded unparsed

    # -- the connection ---------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm()  # a connection that never sends anything is closed too

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._refused:
            return
        self._arm()
        if self._in_head:
            self._head_bytes += len(data)
        super().data_received(data)
        # Checked per chunk as it arrives, so an endless header costs one chunk of parsing, never its whole size.
        if self._in_head and self._head_bytes > self.max_head_bytes:
            self._refuse_head()

    # -- parser callbacks -------------------------------------------------------------------------

    def on_message_begin(self) -> None:
        self._in_head, self._head_bytes = True, 0
        self._arm()
        super().on_message_begin()

    def on_url(self, url: bytes) -> None:
        if not self._refused:
            super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        if not self._refused:
            super().on_header(name, value)

    def on_headers_complete(self) -> None:
        if self._refused:
            return
        self._in_head = False
        # The exact size, for a head that arrived in fewer chunks than the running count could catch.
        size = len(self.url) + sum(len(name) + len(value) + 4 for name, value in self.headers)
        if size > self.max_head_bytes:
            self._refuse_head()
            return
        super().on_headers_complete()

    def on_body(self, body: bytes) -> None:
        if not self._refused:
            super().on_body(body)

    def on_message_complete(self) -> None:
        if self._refused:
            return
        self._disarm()  # received in time; from here the request's own deadline (504) applies
        super().on_message_complete()

    # -- limits -----------------------------------------------------------------------------------

    def _arm(self) -> None:
        if self._deadline is None:
            self._deadline = self.loop.call_later(self.receive_timeout_s, self._timed_out)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _refuse_head(self) -> None:
        message = f"headers: the request line and headers exceed {self.max_head_bytes} bytes"
        self._refuse(431, "headers_too_large", message, "headers")

    def _timed_out(self) -> None:
        self._deadline = None
        if self.transport.is_closing() or self._refused:
            return
        if not self._in_head and self.cycle is not None and self.cycle.response_started:
            self.transport.close()  # the app answered without the whole body; nothing more to say
            return
        message = f"request: not received within {self.receive_timeout_s:g} s"
        self._refuse(408, "request_timeout", message, "request", reason="receive_timeout")

    def _refuse(self, status: int, kind: str, message: str, field: str, reason: str | None = None) -> None:
        """Answer now in the server's error format, then stop parsing and close."""
        self._refused = True
        self._disarm()
        self.on_reject(reason or kind)
        if self.cycle is not None and not self.cycle.response_complete:
            self.cycle.disconnected = True  # a route waiting for the rest of the body stops waiting
            self.cycle.message_event.set()
        response = error_response(status, kind, message, field, headers={"Connection": "close"})
        head = [f"HTTP/1.1 {status} {http.HTTPStatus(status).phrase}\r\n".encode("ascii")]
        head += [name + b": " + value + b"\r\n" for name, value in response.raw_headers]
        self.transport.write(b"".join([*head, b"\r\n", bytes(response.body)]))
        # Half-close and keep reading (discarding) for a moment: closing with unread bytes would reset the
        # connection, and a client still sending could lose the answer.
        if self.transport.can_write_eof():
            self.transport.write_eof()
        self.loop.call_later(LINGER_S, self.transport.close)


def limited_protocol(
    max_head_bytes: int, receive_timeout_s: float, on_reject: Callable[[str], None] | None = None
) -> type[LimitedHttpProtocol]:
    """The protocol class for uvicorn.Config(http=...), with these limits (on_reject counts each refusal's reason)."""
    limits: dict[str, object] = {"max_head_bytes": max_head_bytes, "receive_timeout_s": receive_timeout_s}
    if on_reject is not None:
        limits["on_reject"] = staticmethod(on_reject)
    return type("LimitedHttpProtocol", (LimitedHttpProtocol,), limits)
