"""allowed_hosts and cors_origins on the real server over HTTP: both off by default; when set, a foreign Host
gets 400 in the one error format (probes excepted) and CORS answers preflights without an API key.
"""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

KEY = "origins-key-0123456789"
APP = "https://app.example.com"
PREFLIGHT = {"Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": "authorization,content-type"}


@pytest.fixture(scope="module")
def server(tiny_pipeline) -> Iterator:
    from server.app import create_app
    from server.settings import ServerSettings
    from tests.support.background_server import BackgroundServer

    settings = ServerSettings(
        allowed_hosts="scott.example.com,*.internal,127.0.0.1", cors_origins=APP, api_keys=KEY, warmup=False
    )
    with BackgroundServer(create_app(settings, pipeline=tiny_pipeline)) as running:
        yield running


def test_a_host_not_allowed_gets_400_naming_it(server) -> None:
    response = httpx.get(
        server.url + "/v1/models", headers={"Host": "evil.example.org", "Authorization": f"Bearer {KEY}"}
    )
    assert response.status_code == 400
    error = response.json()["error"]
    assert (error["type"], error["field"]) == ("invalid_host", "host")
    assert "evil.example.org" in error["message"]


@pytest.mark.parametrize("host", ["scott.example.com", "gpu-1.internal", "scott.example.com:8000"])
def test_allowed_hosts_and_wildcards_are_served(server, host: str) -> None:
    response = httpx.get(server.url + "/v1/models", headers={"Host": host, "Authorization": f"Bearer {KEY}"})
    assert response.status_code == 200, response.text


@pytest.mark.parametrize("path", ["/healthz", "/readyz", "/metrics"])
def test_probes_answer_any_host(server, path: str) -> None:
    assert httpx.get(server.url + path, headers={"Host": "10.1.2.3:8000"}).status_code == 200


def test_a_preflight_from_an_allowed_origin_is_answered_without_a_key(server) -> None:
    response = httpx.options(server.url + "/generate", headers={"Origin": APP, **PREFLIGHT})
    assert response.status_code == 200, response.text
    assert response.headers["access-control-allow-origin"] == APP
    assert "POST" in response.headers["access-control-allow-methods"]
    assert "authorization" in response.headers["access-control-allow-headers"].lower()


def test_a_preflight_from_another_origin_is_refused(server) -> None:
    response = httpx.options(server.url + "/generate", headers={"Origin": "https://evil.example.org", **PREFLIGHT})
    assert response.status_code == 400
    assert "access-control-allow-origin" not in response.headers


def test_responses_to_an_allowed_origin_carry_cors_headers_even_when_refused(server) -> None:
    body = {"prompt": "a red circle", "steps": 1, "width": 32, "height": 32}
    served = httpx.post(
        server.url + "/generate", json=body, headers={"Origin": APP, "Authorization": f"Bearer {KEY}"}, timeout=60
    )
    assert served.status_code == 200, served.text
    assert served.headers["access-control-allow-origin"] == APP
    refused = httpx.post(server.url + "/generate", json=body, headers={"Origin": APP})
    assert refused.status_code == 401  # and the page can read why
    assert refused.headers["access-control-allow-origin"] == APP


def test_both_are_off_by_default(live_server) -> None:
    assert httpx.get(live_server.url + "/v1/models", headers={"Host": "anything.example.org"}).status_code == 200
    preflight = httpx.options(live_server.url + "/generate", headers={"Origin": APP, **PREFLIGHT})
    assert "access-control-allow-origin" not in preflight.headers
