"""API keys on the real server over HTTP: Bearer keys from SCOTT_API_KEYS and a key file, 401 in the one error
format, open probes and /metrics, the `openai` client with api_key, a per-key bound on requests in flight.

Without keys the server is open to whoever reaches its port (the Docker image binds 0.0.0.0).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import openai
import pytest

KEYS = ("key-one-0123456789", "key-two-0123456789")
FILE_KEY = "key-from-the-file-0123"
SMALL = {"prompt": "a red circle", "steps": 1, "width": 32, "height": 32}


class Captured(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))


@pytest.fixture(scope="module")
def log() -> Iterator[Captured]:
    """Every record of the server's loggers at DEBUG, for the check that no key is ever logged."""
    handler, loggers = Captured(), [logging.getLogger(name) for name in ("", "uvicorn", "server")]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.addHandler(handler)
        logger.setLevel(logging.DEBUG)
    yield handler
    for logger, level in zip(loggers, levels, strict=True):
        logger.removeHandler(handler)
        logger.setLevel(level)


@pytest.fixture(scope="module")
def server(gated_pipeline, tmp_path_factory: pytest.TempPathFactory, log: Captured) -> Iterator:
    from server.app import create_app
    from server.settings import ServerSettings
    from tests.support.background_server import BackgroundServer

    key_file = tmp_path_factory.mktemp("keys") / "keys.txt"
    key_file.write_text(f"# the team's keys\n\n{FILE_KEY}  # a comment\n")
    settings = ServerSettings(api_keys=",".join(KEYS), api_key_file=key_file, max_concurrent_per_key=1)
    with BackgroundServer(create_app(settings, pipeline=gated_pipeline)) as running:
        yield running


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


@pytest.mark.parametrize(
    ("method", "path"),
    [("POST", "/generate"), ("POST", "/v1/images/generations"), ("GET", "/v1/models"), ("GET", "/info")],
)
@pytest.mark.parametrize(
    ("headers", "challenge"),
    [
        ({}, 'Bearer realm="scott"'),
        (bearer("not-a-key"), 'Bearer realm="scott", error="invalid_token"'),
        (bearer(KEYS[0][:-1]), 'Bearer realm="scott", error="invalid_token"'),  # a prefix is not the key
        ({"Authorization": f"Basic {KEYS[0]}"}, 'Bearer realm="scott"'),
    ],
    ids=["none", "wrong", "prefix", "basic"],
)
def test_model_routes_need_a_key(server, method: str, path: str, headers: dict, challenge: str) -> None:
    response = httpx.request(method, server.url + path, json=SMALL if method == "POST" else None, headers=headers)
    assert response.status_code == 401, response.text
    assert response.headers["www-authenticate"] == challenge
    error = response.json()["error"]
    assert (error["type"], error["field"]) == ("unauthorized", "authorization")
    assert "Bearer" in error["message"] or "not valid" in error["message"]


@pytest.mark.parametrize("path", ["/healthz", "/readyz", "/v2/health/live", "/v2/health/ready", "/metrics"])
def test_probes_and_metrics_stay_open(server, path: str) -> None:
    assert httpx.get(server.url + path).status_code == 200


@pytest.mark.parametrize("key", [*KEYS, FILE_KEY])
def test_each_key_from_the_environment_and_the_file_is_served(server, key: str) -> None:
    response = httpx.post(server.url + "/generate", json=SMALL, headers=bearer(key), timeout=60)
    assert response.status_code == 200, response.text


def test_the_openai_client_with_api_key_works_and_a_wrong_key_is_its_authentication_error(server) -> None:
    client = openai.OpenAI(base_url=server.url + "/v1", api_key=KEYS[1], max_retries=0, timeout=60)
    result = client.images.generate(prompt="a blue square", size="32x32", extra_body={"steps": 1})
    assert result.data[0].b64_json
    assert [model.id for model in client.models.list()] == ["scott-tiny"]
    wrong = openai.OpenAI(base_url=server.url + "/v1", api_key="sk-wrong", max_retries=0, timeout=60)
    with pytest.raises(openai.AuthenticationError, match="not valid"):
        wrong.images.generate(prompt="x")


def test_one_key_past_its_concurrency_gets_429_while_another_key_is_served(server, gated_pipeline) -> None:
    gated_pipeline.gate.clear()
    try:
        with ThreadPoolExecutor(2) as pool:
            held = pool.submit(httpx.post, server.url + "/generate", json=SMALL, headers=bearer(KEYS[0]), timeout=60)
            assert gated_pipeline.holding.wait(30), "the first request never reached the worker"
            busy = httpx.post(server.url + "/generate", json=SMALL, headers=bearer(KEYS[0]), timeout=60)
            other = pool.submit(httpx.post, server.url + "/generate", json=SMALL, headers=bearer(KEYS[1]), timeout=60)
            gated_pipeline.gate.set()
            assert held.result(60).status_code == 200
            assert other.result(60).status_code == 200
    finally:
        gated_pipeline.gate.set()
        gated_pipeline.holding.clear()
    assert busy.status_code == 429, busy.text
    assert busy.headers["retry-after"] == "1"
    assert busy.json()["error"]["type"] == "key_busy"
    # the key's slot is free again
    assert httpx.post(server.url + "/generate", json=SMALL, headers=bearer(KEYS[0]), timeout=60).status_code == 200


def test_keys_are_never_logged_nor_shown_in_settings(server, log: Captured) -> None:
    from server.settings import ServerSettings

    httpx.post(server.url + "/generate", json=SMALL, headers=bearer("wrong-key-in-a-request"), timeout=60)
    httpx.post(server.url + "/generate", json=SMALL, headers=bearer(KEYS[0]), timeout=60)
    text = "\n".join(log.lines)
    assert text  # the server did log at DEBUG
    for key in (*KEYS, FILE_KEY, "wrong-key-in-a-request"):
        assert key not in text
    settings = ServerSettings(api_keys=",".join(KEYS))
    assert KEYS[0] not in repr(settings) and KEYS[0] not in str(settings.model_dump())


def test_a_missing_or_empty_key_file_fails_at_start_naming_it(tmp_path: Path) -> None:
    from pydantic import ValidationError

    from server.settings import ServerSettings

    with pytest.raises(ValidationError, match=r"cannot read missing\.txt"):
        ServerSettings(api_key_file=tmp_path / "missing.txt")
    (tmp_path / "empty.txt").write_text("# nothing yet\n\n")
    with pytest.raises(ValidationError, match=r"empty\.txt holds no key"):
        ServerSettings(api_key_file=tmp_path / "empty.txt")


def test_without_keys_the_routes_are_open(live_server) -> None:
    assert httpx.get(live_server.url + "/v1/models").status_code == 200


def test_the_spec_says_which_routes_need_a_key(server) -> None:
    spec = httpx.get(server.url + "/openapi.json").json()
    assert spec["components"]["securitySchemes"]["bearer"] == {"type": "http", "scheme": "bearer"}
    for path in ("/generate", "/v1/images/generations", "/sdapi/v1/txt2img"):
        assert spec["paths"][path]["post"]["security"] == [{"bearer": []}]
    assert "security" not in spec["paths"]["/healthz"]["get"] and "security" not in spec["paths"]["/metrics"]["get"]
    assert "401" in spec["paths"]["/generate"]["post"]["responses"]
