"""The load test's pure parts: the SLO gate, what counts as an image response, the ramp."""

from __future__ import annotations

import base64
import io
import json

import numpy as np
import pytest
from PIL import Image

from loadtests.checks import image_problem, png_problem
from loadtests.ramp import ramp_tick
from loadtests.slo import Measured, Thresholds, evaluate


def _png(width: int = 8, height: int = 8) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(np.zeros((height, width, 3), np.uint8)).save(buffer, format="PNG")
    return buffer.getvalue()


# -- SLO gate -------------------------------------------------------------------------------------


def _measured(**overrides: float) -> Measured:
    values = {"requests": 100, "failures": 0, "p50_ms": 200.0, "p95_ms": 400.0, "p99_ms": 600.0, **overrides}
    return Measured(**values)  # type: ignore[arg-type]


def test_gate_passes_within_every_threshold() -> None:
    result = evaluate(_measured(failures=1), Thresholds(max_failure_ratio=0.01, max_p95_ms=400, max_p99_ms=600))
    assert result.passed
    assert [c.name for c in result.checks] == [
        "requests",
        "failure ratio",
        "p95 latency",
        "p99 latency",
        "load-test errors",
    ]
    assert result.table().splitlines()[0] == "SLO gate: PASSED"


@pytest.mark.parametrize(
    ("measured", "thresholds", "failing"),
    [
        (_measured(p95_ms=400.5), Thresholds(max_p95_ms=400), "p95 latency"),
        (_measured(p99_ms=601), Thresholds(max_p99_ms=600), "p99 latency"),
        (_measured(failures=2), Thresholds(max_failure_ratio=0.01), "failure ratio"),
        (_measured(requests=0, p95_ms=0.0, p99_ms=0.0), Thresholds(max_p95_ms=1000), "requests"),
        (_measured(errors=1), Thresholds(), "load-test errors"),
    ],
)
def test_gate_fails_on_each_threshold(measured: Measured, thresholds: Thresholds, failing: str) -> None:
    result = evaluate(measured, thresholds)
    assert not result.passed
    assert [c.name for c in result.checks if not c.passed] == [failing]
    table = result.table()
    assert table.splitlines()[0] == "SLO gate: FAILED"
    assert any(line.split()[-1] == "FAIL" and line.strip().startswith(failing) for line in table.splitlines())


def test_unset_latency_thresholds_are_not_checked() -> None:
    result = evaluate(_measured(p95_ms=1e9, p99_ms=1e9), Thresholds())
    assert result.passed
    assert "p95 latency" not in [c.name for c in result.checks]


def test_gate_json_round_trips() -> None:
    payload = json.loads(json.dumps(evaluate(_measured(failures=5), Thresholds(max_p95_ms=100)).to_json()))
    assert payload["passed"] is False
    assert payload["measured"]["failure_ratio"] == pytest.approx(0.05)
    assert payload["thresholds"]["max_p95_ms"] == 100


@pytest.mark.parametrize("kwargs", [{"max_failure_ratio": 1.5}, {"max_p95_ms": 0}, {"max_p99_ms": -1}])
def test_thresholds_reject_nonsense(kwargs: dict) -> None:
    with pytest.raises(ValueError):
        Thresholds(**kwargs)


# -- image responses ------------------------------------------------------------------------------


def test_png_response_with_an_image_passes() -> None:
    assert image_problem(200, "image/png", _png(), "png") is None


def test_json_response_with_images_passes() -> None:
    body = json.dumps({"images": [{"b64_png": base64.b64encode(_png()).decode(), "seed": 1}]}).encode()
    assert image_problem(200, "application/json", body, "json") is None


@pytest.mark.parametrize(
    ("status", "content_type", "body", "want", "reason"),
    [
        (422, "application/json", b'{"error": {"message": "steps: too many"}}', "png", "HTTP 422: steps: too many"),
        (503, "text/plain", b"upstream gone", "png", "HTTP 503: upstream gone"),
        (200, "application/json", b'{"images": []}', "png", "not image/png"),
        (200, "image/png", b"", "png", "not a PNG"),
        (200, "image/png", b"GIF89a" + bytes(40), "png", "not a PNG"),
        (200, "application/json", b"{}", "json", "without an images list"),
        (200, "application/json", b'{"images": []}', "json", "no images"),
        (200, "application/json", b'{"images": [{"b64_png": "!!"}]}', "json", "base64"),
        (200, "application/json", b'{"images": [{"b64_png": "aGVsbG8="}]}', "json", "not a PNG"),
        (200, "image/png", _png(), "json", "not application/json"),
    ],
)
def test_bad_responses_are_failures(status: int, content_type: str, body: bytes, want: str, reason: str) -> None:
    problem = image_problem(status, content_type, body, want)
    assert problem is not None and reason in problem


def test_png_header_must_name_a_non_empty_image() -> None:
    data = bytearray(_png())
    assert png_problem(bytes(data)) is None
    data[16:20] = bytes(4)  # width 0
    assert "empty PNG" in (png_problem(bytes(data)) or "")
    assert "IHDR" in (png_problem(bytes(data[:20])) or "")


# -- ramp -----------------------------------------------------------------------------------------


def test_ramp_rises_holds_then_stops() -> None:
    assert ramp_tick(0.0, 8, 20.0, 40.0) == (8, 0.4)  # users start at 0.4/s: the peak at 20 s
    assert ramp_tick(59.9, 8, 20.0, 40.0) == (8, 0.4)
    assert ramp_tick(60.0, 8, 20.0, 40.0) is None
    assert ramp_tick(1.0, 3, 0.0, 5.0) == (3, 3.0)  # no ramp: all at once
    with pytest.raises(ValueError):
        ramp_tick(0.0, 0, 1.0, 1.0)
