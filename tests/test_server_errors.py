"""Errors never show server file paths, environment or tracebacks to clients; the log keeps the detail.

The case that matters most: after a failed model load, /healthz, /readyz, /info and /generate name the folder, never
its absolute path.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import httpx
import pytest

SMALL = {"prompt": "a red circle", "steps": 1, "width": 32, "height": 32}


def test_a_failed_load_says_what_failed_without_the_path(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    from server.app import create_app
    from server.settings import ServerSettings
    from tests.support.background_server import BackgroundServer

    model_dir = tmp_path / "private-folder" / "broken-model"
    model_dir.mkdir(parents=True)
    caplog.set_level(logging.ERROR, logger="server.service")
    settings = ServerSettings(model_dir=model_dir, backend="torch", device="cpu")
    with BackgroundServer(create_app(settings), wait_ready=False) as server:
        deadline = time.monotonic() + 60
        while httpx.get(server.url + "/healthz").status_code == 200:
            assert time.monotonic() < deadline, "the load never failed"
            time.sleep(0.05)
        answers = [httpx.get(server.url + path) for path in ("/healthz", "/readyz", "/info", "/v2/health/live")]
        answers += [httpx.post(server.url + path, json=SMALL) for path in ("/generate", "/v1/images/generations")]
    for answer in answers:
        assert answer.status_code == 503, answer.text
        assert str(tmp_path) not in answer.text and "private-folder" not in answer.text, answer.text
    for answer in answers[:3] + answers[4:]:  # /v2/health/live is a bare {"live": false}
        assert "broken-model is not a diffusers model folder" in answer.text, answer.text
    assert str(model_dir) in caplog.text  # the log keeps the whole


def test_an_inference_failure_is_a_500_without_the_path(tiny_pipeline, tmp_path: Path, monkeypatch) -> None:
    from server.app import create_app
    from server.settings import ServerSettings
    from tests.support.background_server import BackgroundServer

    secret = tmp_path / "private-folder" / "vae.bin"

    def decode(latents):
        raise OSError(f"cannot read {secret}")

    with BackgroundServer(create_app(ServerSettings(warmup=False), pipeline=tiny_pipeline)) as server:
        monkeypatch.setattr(tiny_pipeline.backend, "decode", decode)
        failed = httpx.post(server.url + "/generate", json=SMALL, timeout=60)
    assert failed.status_code == 500
    error = failed.json()["error"]
    assert error["type"] == "inference_failed" and "cannot read vae.bin" in error["message"]
    assert "private-folder" not in failed.text


def test_an_unexpected_error_is_a_json_500_without_traceback(tiny_pipeline, monkeypatch) -> None:
    from server.app import create_app
    from server.settings import ServerSettings
    from tests.support.background_server import BackgroundServer

    def broken(*args, **kwargs):
        raise KeyError("/home/someone/.secrets/token")

    with BackgroundServer(create_app(ServerSettings(warmup=False), pipeline=tiny_pipeline)) as server:
        monkeypatch.setattr("server.generation.resolve", broken)
        failed = httpx.post(server.url + "/generate", json=SMALL, timeout=60)
        assert httpx.get(server.url + "/healthz").status_code == 200  # and it goes on serving
    assert failed.status_code == 500
    assert failed.json()["error"]["type"] == "internal_error"
    assert "Traceback" not in failed.text and "secrets" not in failed.text and "KeyError" not in failed.text
