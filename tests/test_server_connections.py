"""How the real server's HTTP protocol meets clients over raw sockets: a client that half-closes after its request
is answered (a full close is still a disconnect: tests/test_server_capacity.py), and requests httptools cannot parse
are answered in the one error format, not uvicorn's text/plain 400."""

from __future__ import annotations

import json
import socket

import httpx
import pytest

from tests.support import raw_http


def metric(url: str, name: str) -> float:
    for line in httpx.get(url + "/metrics").text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    raise AssertionError(f"{name} missing")


DISCONNECTED = ('scott_dropped_jobs_total{reason="disconnected"}', 'scott_rejections_total{reason="disconnected"}')
HALF_CLOSED = [
    ("/generate", {"prompt": "a red circle", "steps": 1, "seed": 3}, "Accept: image/png\r\n"),
    ("/v1/images/generations", {"prompt": "a red circle", "size": "32x32", "steps": 1}, ""),
]


@pytest.mark.parametrize(("path", "body", "headers"), HALF_CLOSED, ids=[path for path, *_ in HALF_CLOSED])
def test_a_client_that_half_closes_after_its_request_is_answered(live_server, path, body, headers) -> None:
    """`nc -N` shuts down its sending side once the request is sent: before, that read as a disconnect (no answer,
    the job dropped and counted as disconnected)."""
    before = [metric(live_server.url, name) for name in DISCONNECTED]
    with raw_http.connect(live_server.port) as sock:
        sock.sendall(raw_http.post_json(path, json.dumps(body).encode(), headers))
        sock.shutdown(socket.SHUT_WR)
        responses = raw_http.split_responses(raw_http.read_to_end(sock))  # to the server's close
    *interim, (status, answer_headers, answer) = responses
    assert all(100 <= code < 200 for code, _, _ in interim)  # any client of HTTP/1.1 parses and skips these
    assert status == 200, answer
    assert answer_headers["connection"] == "close"  # nothing more can come from this client
    if "png" in headers:
        assert answer.startswith(b"\x89PNG")
    else:
        assert json.loads(answer)["data"][0]["b64_json"]
    assert [metric(live_server.url, name) for name in DISCONNECTED] == before


def test_a_kept_alive_connection_that_half_closes_between_requests_is_closed(live_server) -> None:
    with raw_http.connect(live_server.port) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n")
        assert raw_http.read_response(sock)[0] == 200
        sock.shutdown(socket.SHUT_WR)
        assert raw_http.closed_by_server(sock, within_s=10)


MALFORMED = {
    "NUL in a header": b"GET /healthz HTTP/1.1\r\nHost: t\r\nX-Bad: a\x00b\r\n\r\n",
    "Content-Length and Transfer-Encoding": (
        b"POST /generate HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\nContent-Length: 2\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n{}"
    ),
    "two Content-Lengths": (
        b"POST /generate HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\nContent-Length: 2\r\n"
        b"Content-Length: 3\r\n\r\n{}"
    ),
    "an unknown method": b"FOO /healthz HTTP/1.1\r\nHost: t\r\n\r\n",
}


@pytest.mark.parametrize("request_bytes", MALFORMED.values(), ids=MALFORMED.keys())
def test_malformed_http_is_a_json_400_naming_the_request(live_server, request_bytes: bytes) -> None:
    with raw_http.connect(live_server.port) as sock:
        sock.sendall(request_bytes)
        status, headers, body = raw_http.read_response(sock)
        assert raw_http.closed_by_server(sock, within_s=10)
    assert status == 400 and headers["content-type"] == "application/json" and headers["connection"] == "close"
    error = json.loads(body)["error"]
    assert (error["type"], error["field"]) == ("invalid_http", "request"), error
    assert error["message"].startswith("request: not valid HTTP/1.1: ") and len(error["message"]) > 30
    assert httpx.get(live_server.url + "/healthz").status_code == 200  # and it goes on serving
