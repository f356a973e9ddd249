"""Requests an outside probe sent the real server over HTTP: bodies json.loads gives up on, a flood of unknown keys,
loosely written sizes, a trailing slash with a foreign Host, HEAD. Each is answered in the one error format naming
its field (or served), and the server keeps serving."""

from __future__ import annotations

import gzip
import json
import string

import httpx
import pytest


@pytest.fixture(scope="module")
def client(live_server) -> httpx.Client:
    with httpx.Client(base_url=live_server.url, timeout=60.0) as client:
        yield client


JSON = {"Content-Type": "application/json"}
# Before: 400 {"type": "http_error", "message": "There was an error parsing the body", "field": null}.
UNPARSABLE = {
    "5000-digit number": (b'{"prompt": "x", "seed": ' + b"1" * 5000 + b"}", "4300 digits"),
    "invalid UTF-8": (b'{"prompt": "\xff\xfe"}', "not UTF-8"),
    "5000-deep nesting": (b"[" * 5000 + b"]" * 5000, "nested too deeply"),
}


@pytest.mark.parametrize(("body", "reason"), UNPARSABLE.values(), ids=UNPARSABLE.keys())
def test_a_body_json_cannot_parse_is_a_400_on_the_body_with_the_reason(client, body: bytes, reason: str) -> None:
    response = client.post("/generate", content=body, headers=JSON)
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert (error["type"], error["field"]) == ("invalid_request", "body"), error
    assert error["message"].startswith("body is not valid JSON: ") and reason in error["message"], error["message"]
    assert "set_int_max_str_digits" not in error["message"]  # Python's advice to the server, not to the client
    assert error["errors"] == [{"field": "body", "message": error["message"]}]


def test_a_compressed_body_is_a_415_naming_content_encoding(client) -> None:
    headers = {**JSON, "Content-Encoding": "gzip"}
    response = client.post("/generate", content=gzip.compress(b'{"prompt": "x"}'), headers=headers)
    assert response.status_code == 415, response.text
    error = response.json()["error"]
    assert (error["type"], error["field"]) == ("unsupported_media_type", "content-encoding")
    assert "gzip" in error["message"] and "uncompressed" in error["message"]


NAMES = [a + b + c for a in string.ascii_letters for b in string.ascii_letters for c in "xyz"]


def _flood(count: int, **fields: object) -> bytes:
    return json.dumps({**fields, **dict.fromkeys(NAMES[:count], 0)}, separators=(",", ":")).encode()


def test_a_flood_of_unknown_keys_is_one_error_on_the_body_counting_them(client) -> None:
    """64 KB of unknown keys was a 443,870-byte 422 listing each one, then ten of 7,000 errors pydantic still made one
    by one (40 such bodies at once held /healthz 0.6-1.6 s); now one error, made before pydantic looks at a key."""
    body = _flood(7000, prompt="x")
    assert len(body) < 65536
    response = client.post("/generate", content=body, headers=JSON)
    assert response.status_code == 422
    assert len(response.content) < 1000, len(response.content)
    error = response.json()["error"]
    assert (error["type"], error["field"]) == ("invalid_request", "body")
    message = "body: 7000 unknown fields (more than 32 are refused unlisted); the first 3: aax, aay, aaz"
    assert error["message"] == message
    assert error["errors"] == [{"field": "body", "message": error["message"]}]


def test_a_flood_names_its_first_keys_cut(client) -> None:
    body = json.dumps({"k" * 5000: 0, **dict.fromkeys(NAMES[:40], 0), "prompt": "x"}).encode()
    response = client.post("/generate", content=body, headers=JSON)
    assert response.status_code == 422 and len(response.content) < 1000, response.text
    assert response.json()["error"]["message"].endswith(f"the first 3: {'k' * 100}..., aax, aay")


def test_up_to_32_unknown_keys_are_each_refused_by_name(client) -> None:
    response = client.post("/generate", content=_flood(32, prompt="x"), headers=JSON)
    assert response.status_code == 422
    error = response.json()["error"]
    assert error["field"] == "aax" and "32 errors in all; the first 10 are listed" in error["message"], error
    assert [e["field"] for e in error["errors"]] == NAMES[:10]


@pytest.mark.parametrize("route", ["/v1/images/generations", "/sdapi/v1/txt2img"])
def test_a_flood_on_a_route_that_ignores_unknown_keys_costs_no_error_per_key(client, route: str) -> None:
    """These routes ignore the fields clients send them that have no use here (pydantic skips them unread): a flood
    of unknown keys is answered for what it lacks, the prompt, with the one error."""
    response = client.post(route, content=_flood(7000), headers=JSON)
    assert response.status_code == 422
    error = response.json()["error"]
    assert error["field"] == "prompt" and error["errors"] == [{"field": "prompt", "message": "prompt is required"}]


def test_a_long_unknown_key_is_shown_cut(client) -> None:
    response = client.post("/generate", json={"prompt": "x", "k" * 5000: 1})
    assert response.status_code == 422
    assert len(response.content) < 1000 and "kkk..." in response.json()["error"]["field"]


# Before: "٦٤", "６４x６４", "64\n", " 64 x 64 ", "64X64" were served as 64x64 (200); "-64x64" got 400, "0x0" 422.
LOOSE_SIZES = ["٦٤", "６４x６４", "64\n", " 64 x 64 ", "64X64", "64x", "x64", "64x64x64", "-64x64", "+64", "big", "0x0"]


@pytest.mark.parametrize("size", LOOSE_SIZES)
def test_a_size_is_ascii_wxh_or_side_else_one_422_naming_size(client, size: str) -> None:
    response = client.post("/v1/images/generations", json={"prompt": "x", "size": size, "steps": 1})
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert (error["type"], error["field"]) == ("invalid_request", "size")


@pytest.mark.parametrize(("size", "served"), [("64x32", "64x32"), ("48", "48x48"), ("auto", "64x64")])
def test_sizes_in_the_grammar_are_served(client, size: str, served: str) -> None:
    response = client.post("/v1/images/generations", json={"prompt": "x", "size": size, "steps": 1})
    assert response.status_code == 200, response.text
    assert response.json()["size"] == served


def test_parse_size_is_the_strict_grammar() -> None:
    from server.params import parse_size

    assert parse_size("512x384") == (512, 384) and parse_size("96") == (96, 96)
    for text in LOOSE_SIZES[:-1]:  # "0x0" is a size the grammar reads, and no model makes
        with pytest.raises(ValueError, match="WIDTHxHEIGHT or SIDE"):
            parse_size(text)


def test_a_trailing_slash_is_a_404_never_a_redirect_to_the_host_header(client) -> None:
    """Before: 307 Location: http://evil.example/generate, built from the request's Host header."""
    for method in ("GET", "POST"):
        response = client.request(method, "/generate/", headers={"Host": "evil.example"}, json={"prompt": "x"})
        assert response.status_code == 404, response.text
        assert "location" not in response.headers and "evil.example" not in response.text
        error = response.json()["error"]
        assert (error["type"], error["field"]) == ("not_found", "path")
        assert "'/generate/'" in error["message"]


def test_a_wrong_method_names_the_allowed_ones(client) -> None:
    response = client.get("/generate")
    assert response.status_code == 405 and response.headers["allow"] == "POST"
    error = response.json()["error"]
    assert (error["type"], error["field"]) == ("method_not_allowed", "method")
    assert "allowed: POST" in error["message"]


@pytest.mark.parametrize("path", ["/healthz", "/readyz", "/metrics", "/", "/info", "/openapi.json", "/docs"])
def test_head_is_get_without_the_body(client, path: str) -> None:
    """Before: 405 on every route (FastAPI's routes answer only the methods they name)."""
    get, head = client.get(path), client.head(path)
    assert get.status_code == head.status_code == 200, head.text
    assert head.content == b""
    assert head.headers["content-type"] == get.headers["content-type"]
    if path != "/metrics":  # its counters move between the two requests
        assert head.headers["content-length"] == get.headers["content-length"] == str(len(get.content))


def test_head_on_a_post_route_is_405(client) -> None:
    response = client.head("/generate")
    assert response.status_code == 405 and response.headers["allow"] == "POST" and response.content == b""
