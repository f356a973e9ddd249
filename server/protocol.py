"""The HTTP/1.1 protocol `scott serve` runs: uvicorn's httptools protocol with a cap on the request head and a
deadline for receiving each request, enforced as bytes arrive, before anything reaches the app; malformed requests
answered in the server's error format; and a request still answered after its client half-closes.

uvicorn alone bounds neither: httptools buffers a header of any size (concatenating its pieces, so one 128 MB
header held the event loop for seconds), and a client that sends a byte a second is never closed. It closes a
connection at the client's EOF, so a client that shuts down its sending side after its request (`nc -N`) was
counted as gone and got no answer.
"""

from __future__ import annotations

import asyncio
import http
import socket
import sys
from collections.abc import Callable

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from server.errors import error_response

LINGER_S = 2.0  # after an early answer, how long the rest of a request is read and discarded before closing
PEER_CHECK_S = 0.02  # after a client's EOF, how often its socket is checked for the reset of a closed client
CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"


class LimitedHttpProtocol(HttpToolsProtocol):
    """Answers 431 to a request line plus headers over max_head_bytes, 408 to a request not received within
    receive_timeout_s of its first byte (or of the connection, for its first request) and 400 to one httptools
    cannot parse, then closes.

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
        self._received = False  # the request being answered arrived whole
        self._peer_check: asyncio.TimerHandle | None = None  # after the client's EOF: has it closed or half-closed?

    # -- the connection ---------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm()  # a connection that never sends anything is closed too

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        if self._peer_check is not None:
            self._peer_check.cancel()
        super().connection_lost(exc)

    def eof_received(self) -> bool | None:
        """The client sends nothing more: it closed, or only shut down its sending side after its request.

        TCP cannot tell the two apart until the server writes: a closed socket answers data with a reset. So a
        request received whole (HTTP/1.1) is answered `100 Continue` (which every HTTP/1.1 client parses) and kept
        open, half-closed, until its response, after which the connection closes; a reset of the socket meanwhile
        means the client closed, and it is counted as gone as before (its queued images dropped before they run).
        EOF with no request, or inside one, or from an HTTP/1.0 client (which takes no 1xx) closes, as uvicorn does.
        """
        cycle = self.cycle
        if self._refused or not self._received or cycle is None or cycle.response_complete:
            return None
        if cycle.scope["http_version"] != "1.1":
            return None
        cycle.keep_alive = False  # answered, then closed: nothing more can arrive
        if not cycle.response_started:
            self.transport.write(CONTINUE)
            cycle.waiting_for_100_continue = False
            self._check_peer()
        return True  # keep the sending side open for the answer

    def _check_peer(self) -> None:
        self._peer_check = None
        if self.transport.is_closing() or self.cycle is None or self.cycle.response_started:
            return
        sock = self.transport.get_extra_info("socket")
        if sock is not None and sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR):
            self.transport.close()  # reset: the client closed; connection_lost tells the route it is gone
            return
        self._peer_check = self.loop.call_later(PEER_CHECK_S, self._check_peer)

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
        self._in_head, self._head_bytes, self._received = True, 0, False
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
        self._received = True
        super().on_message_complete()

    # -- limits -----------------------------------------------------------------------------------

    def _arm(self) -> None:
        if self._deadline is None:
            self._deadline = self.loop.call_later(self.receive_timeout_s, self._timed_out)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def send_400_response(self, msg: str) -> None:
        """uvicorn's answer to what httptools cannot parse (NUL in a header, Content-Length with Transfer-Encoding,
        two Content-Lengths, an unknown method): text/plain there, the error format here, with httptools' reason."""
        error = sys.exception()  # called while uvicorn handles the parser's error
        reason = str(error) if error is not None and str(error) else msg
        self._refuse(400, "invalid_http", f"request: not valid HTTP/1.1: {reason}", "request", reason="invalid")

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
