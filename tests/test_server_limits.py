"""Request-head and receive-time limits of the real server (its own uvicorn config and protocol), over raw sockets.

What they stop: a 1 MB header or 20,000 headers being served, a 128 MB header holding the event loop while it
arrives, a client sending a byte a second being kept open forever.
"""

from __future__ import annotations

import contextlib
import json
import select
import socket
import time
from collections.abc import Iterator

import httpx
import pytest

from tests.support import raw_http
from tests.support.raw_http import closed_by_server, read_response

RECEIVE_TIMEOUT_S = 1.0


@pytest.fixture(scope="module")
def server(tiny_pipeline) -> Iterator:
    from server.app import create_app
    from server.settings import ServerSettings
    from tests.support.background_server import BackgroundServer

    settings = ServerSettings(receive_timeout_s=RECEIVE_TIMEOUT_S, max_header_bytes=16 * 1024)
    with BackgroundServer(create_app(settings, pipeline=tiny_pipeline)) as running:
        yield running


def connect(server) -> socket.socket:
    return raw_http.connect(server.port)


def assert_error(body: bytes, kind: str, field: str) -> dict:
    error = json.loads(body)["error"]
    assert (error["type"], error["field"]) == (kind, field), error
    return error


def test_an_endless_header_is_answered_431_while_it_is_still_arriving(server) -> None:
    total = 64 * 1024 * 1024
    chunk = b"a" * 65536
    with connect(server) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: test\r\nX-Big: ")
        sent = 0
        while sent < total and not select.select([sock], [], [], 0)[0]:
            try:
                sock.sendall(chunk)
            except ConnectionError:
                break
            sent += len(chunk)
        status, headers, body = read_response(sock)
        assert closed_by_server(sock, within_s=10)
    assert status == 431
    assert headers["connection"] == "close"
    error = assert_error(body, "headers_too_large", "headers")
    assert "16384 bytes" in error["message"]
    assert sent < total // 2  # answered long before the header ended (before: parsed whole, then 200)
    assert httpx.get(f"{server.url}/healthz").status_code == 200


@pytest.mark.parametrize(
    "head",
    [
        b"GET /healthz HTTP/1.1\r\nHost: t\r\n" + b"".join(b"X-%d: v\r\n" % i for i in range(20_000)) + b"\r\n",
        b"GET /healthz?" + b"q" * 20_000 + b" HTTP/1.1\r\nHost: t\r\n\r\n",  # the request line counts too
        b"GET /healthz HTTP/1.1\r\nHost: t\r\nX-Big: " + b"a" * 1024 * 1024 + b"\r\n\r\n",
    ],
    ids=["20000-headers", "long-request-line", "1MB-header"],
)
def test_heads_over_the_cap_get_431(server, head: bytes) -> None:
    with connect(server) as sock:
        with contextlib.suppress(ConnectionError):  # answered and closing before the rest was sent
            sock.sendall(head)
        status, _, body = read_response(sock)
    assert status == 431
    assert_error(body, "headers_too_large", "headers")


def test_a_head_under_the_cap_is_served(server) -> None:
    response = httpx.get(f"{server.url}/healthz", headers={"X-Fine": "a" * 12_000})
    assert response.status_code == 200


def test_a_client_dripping_its_request_line_is_answered_408_and_closed(server) -> None:
    start = time.monotonic()
    with connect(server) as sock:
        for byte in b"GET /healthz HTTP/1.1\r\n":
            if select.select([sock], [], [], 0.1)[0]:
                break
            sock.sendall(bytes([byte]))
        status, headers, body = read_response(sock)
        assert closed_by_server(sock, within_s=10)
    assert status == 408 and headers["connection"] == "close"
    assert "within 1 s" in assert_error(body, "request_timeout", "request")["message"]
    assert time.monotonic() - start < 10  # before: never closed


def test_a_connection_that_sends_nothing_is_closed(server) -> None:
    with connect(server) as sock:
        assert closed_by_server(sock, within_s=10)


def test_a_body_that_stalls_is_answered_408_before_the_route_runs(server) -> None:
    body = b'{"prompt": "a red circle", "steps": 1}'
    head = b"POST /generate HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
    with connect(server) as sock:
        sock.sendall(head + b"Content-Length: %d\r\n\r\n" % len(body) + body[:10])
        status, _, answer = read_response(sock)
        assert closed_by_server(sock, within_s=10)
    assert status == 408
    assert_error(answer, "request_timeout", "request")


def test_the_deadline_is_per_request_on_a_kept_alive_connection(server) -> None:
    with connect(server) as sock:
        for _ in range(3):  # together longer than one deadline
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n")
            assert read_response(sock)[0] == 200
            time.sleep(RECEIVE_TIMEOUT_S * 0.6)


def test_refusals_are_counted_by_reason(server) -> None:
    from prometheus_client.parser import text_string_to_metric_families

    text = httpx.get(f"{server.url}/metrics").text
    counts = {
        sample.labels["reason"]: sample.value
        for family in text_string_to_metric_families(text)
        if family.name == "scott_rejections"
        for sample in family.samples
        if sample.name == "scott_rejections_total"
    }
    assert counts["headers_too_large"] >= 1 and counts["receive_timeout"] >= 1


def test_the_limits_are_settings_with_defaults() -> None:
    from server.settings import ServerSettings

    settings = ServerSettings()
    assert (settings.max_header_bytes, settings.receive_timeout_s) == (16 * 1024, 10.0)


def test_scott_serve_runs_this_protocol() -> None:
    from server.app import build_server, create_app
    from server.protocol import LimitedHttpProtocol
    from server.settings import ServerSettings

    config = build_server(create_app(ServerSettings(max_header_bytes=4096, receive_timeout_s=3.0))).config
    assert issubclass(config.http, LimitedHttpProtocol)
    assert (config.http.max_head_bytes, config.http.receive_timeout_s) == (4096, 3.0)
