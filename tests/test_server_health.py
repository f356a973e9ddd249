"""Liveness, readiness (only once loaded and warm), KServe v2 aliases, /metrics series, settings."""

from __future__ import annotations

import re
import time

import httpx
import pytest

from server.app import create_app
from server.settings import ServerSettings
from tests.support.background_server import BackgroundServer

SERIES = [
    "scott_request_duration_seconds_bucket",
    "scott_queue_wait_seconds_bucket",
    'scott_inference_stage_seconds_bucket{le="0.001",stage="unet"}',
    'scott_inference_stage_seconds_bucket{le="0.001",stage="text"}',
    'scott_inference_stage_seconds_bucket{le="0.001",stage="vae"}',
    "scott_encode_seconds_bucket",
    "scott_batch_size_bucket",
    "scott_queue_depth ",
    "scott_images_generated_total ",
    'scott_rejections_total{reason="queue_full"}',
    'scott_dropped_jobs_total{reason="disconnected"}',
    "scott_ready 1.0",
    'scott_backend_info{backend="torch",decoder="full",device="cpu",precision="f32"} 1.0',  # the live server's runtime
]


def test_live_and_ready_when_loaded(live_server) -> None:
    with httpx.Client(base_url=live_server.url) as client:
        assert client.get("/healthz").json() == {"status": "ok"}
        assert client.get("/readyz").json() == {"status": "ready", "model": "scott-tiny"}
        assert client.get("/v2/health/live").json() == {"live": True}
        assert client.get("/v2/health/ready").json() == {"ready": True}


def test_metrics_export_the_scott_series(live_server) -> None:
    httpx.post(live_server.url + "/generate", json={"prompt": "for the metrics", "steps": 1}, timeout=60)
    text = httpx.get(live_server.url + "/metrics").text
    for series in SERIES:
        assert series in text, series
    assert "prompt" not in text.replace("scott_", "")  # no request content in labels
    assert 'endpoint="/generate",le="0.001",status="200"' in text


def test_not_ready_until_the_warm_up_generation_has_run(gated_pipeline) -> None:
    gated_pipeline.close()  # the warm-up generation waits at the gate
    app = create_app(ServerSettings(), pipeline=gated_pipeline)
    with BackgroundServer(app, wait_ready=False) as server, httpx.Client(base_url=server.url) as client:
        assert gated_pipeline.holding.wait(30)
        assert client.get("/healthz").status_code == 200  # live while warming up
        loading = client.get("/readyz")
        assert loading.status_code == 503 and loading.json()["status"] == "loading"
        assert re.fullmatch(r"warming up torch: batch 1 of 1, \d+ s", loading.json()["progress"])  # what it does
        assert client.get("/v2/health/ready").json() == {"ready": False}
        early = client.post("/generate", json={"prompt": "too early"})
        assert early.status_code == 503
        assert early.json()["error"]["type"] == "not_ready" and early.headers["Retry-After"] == "1"
        gated_pipeline.gate.set()
        deadline = time.monotonic() + 30
        while client.get("/readyz").status_code != 200:
            assert time.monotonic() < deadline
            time.sleep(0.01)
        assert client.get("/v2/health/ready").json() == {"ready": True}
        assert "progress" not in client.get("/readyz").json()
        assert client.post("/generate", json={"prompt": "now", "steps": 1}).status_code == 200


def test_load_progress_names_files_not_paths() -> None:
    from server.metrics import ServerMetrics
    from server.service import GenerationService

    service = GenerationService(ServerSettings(), ServerMetrics())
    service._progress("  building unet from /var/cache/scott/onnx/0123abcd/unet.onnx ...")
    assert re.fullmatch(r"building unet from unet\.onnx \.\.\., \d+ s", service.progress_text)


def test_a_model_that_fails_to_load_is_neither_live_nor_ready(tmp_path) -> None:
    settings = ServerSettings(model_dir=tmp_path / "missing")
    with (
        BackgroundServer(create_app(settings), wait_ready=False) as server,
        httpx.Client(base_url=server.url) as client,
    ):
        deadline = time.monotonic() + 30
        while client.get("/readyz").json()["status"] == "loading" and time.monotonic() < deadline:
            time.sleep(0.01)
        ready = client.get("/readyz")
        assert ready.status_code == 503 and "not a diffusers model folder" in ready.json()["error"]
        assert client.get("/healthz").status_code == 503
        assert client.get("/v2/health/live").json() == {"live": False}
        assert client.get("/v2/health/ready").json() == {"ready": False}
        failed = client.post("/generate", json={"prompt": "x"})
        assert failed.status_code == 503 and "missing" in failed.json()["error"]["message"]


def test_each_app_has_its_own_metrics_registry(tiny_pipeline) -> None:
    first, second = create_app(ServerSettings(), tiny_pipeline), create_app(ServerSettings(), tiny_pipeline)
    first.state.service.metrics.reject("queue_full")
    assert b'reason="queue_full"} 1.0' in first.state.service.metrics.render()
    assert b'reason="queue_full"} 0.0' in second.state.service.metrics.render()


def test_settings_come_from_scott_environment_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SCOTT_MAX_BATCH_SIZE", "4")
    monkeypatch.setenv("SCOTT_MAX_WAIT_MS", "7.5")
    monkeypatch.setenv("SCOTT_MODEL_DIR", "/models/custom")
    settings = ServerSettings()
    assert (settings.max_batch_size, settings.max_wait_ms, settings.served_model_name) == (4, 7.5, "custom")
    assert ServerSettings(max_batch_size=2).max_batch_size == 2  # explicit (CLI) values win
    monkeypatch.setenv("SCOTT_MAX_QUEUE", "4")
    with pytest.raises(ValueError, match="max_queue"):
        ServerSettings()


def test_the_openapi_schema_lists_every_route() -> None:
    paths = create_app(ServerSettings()).openapi()["paths"]
    for path in ("/generate", "/v1/images/generations", "/v1/models", "/healthz", "/readyz", "/metrics"):
        assert path in paths
    assert "image/png" in paths["/generate"]["post"]["responses"]["200"]["content"]
    assert list(paths["/metrics"]["get"]["responses"]["200"]["content"]) == ["text/plain"]  # not JSON
    for probe in ("/healthz", "/readyz", "/v2/health/live", "/v2/health/ready"):
        assert "503" in paths[probe]["get"]["responses"], probe
    openai = create_app(ServerSettings()).openapi()["components"]["schemas"]["OpenAIImageRequest"]["properties"]
    assert "refused" in openai["stream"]["description"] and "refused" in openai["response_format"]["description"]
