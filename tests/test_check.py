"""`scott check`: the real command on the shipped model (a subprocess: it loads OpenVINO, which this process never
does), and the verdicts of one backend's row."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from engines.check import check_backend, requests

ROOT = Path(__file__).resolve().parents[1]


def test_scott_check_passes_every_backend_this_host_runs_and_says_why_not_the_rest(tmp_path) -> None:
    env = {**os.environ, "SCOTT_CACHE_DIR": str(tmp_path / "cache"), "COLUMNS": "200"}
    command = [sys.executable, "-m", "server.cli", "check", "--model", str(ROOT / "models" / "scott-tiny")]
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    rows = {line.split("│")[1].strip(): line for line in done.stdout.splitlines() if line.startswith("│")}
    for backend in ("torch", "onnx", "openvino"):
        assert "pass" in rows[backend], rows[backend]
    assert "n/a" in rows["tensorrt"] and ("tensorrt" in rows["tensorrt"] or "CUDA" in rows["tensorrt"])


@pytest.fixture
def reference(tiny_pipeline):
    return {batch: tiny_pipeline.generate(requests(batch, 1, 64)).images for batch in (1, 2)}


def test_a_backend_off_by_more_than_its_bound_fails(tiny_pipeline, reference, monkeypatch) -> None:
    assert check_backend("torch", lambda: tiny_pipeline, reference, 1, 64).status == "pass"
    real_decode = tiny_pipeline.backend.decode
    monkeypatch.setattr(tiny_pipeline.backend, "decode", lambda latents: real_decode(latents) + 0.1)  # ~13 of 255
    row = check_backend("torch", lambda: tiny_pipeline, reference, 1, 64)
    assert row.status == "fail" and "differs from torch f32" in row.reason and row.max_diff >= 12


def test_nan_or_a_failing_load_fails_the_row(tiny_pipeline, reference, monkeypatch) -> None:
    monkeypatch.setattr(
        tiny_pipeline.backend, "decode", lambda latents: latents.new_full((len(latents), 3, 64, 64), float("nan"))
    )
    row = check_backend("torch", lambda: tiny_pipeline, reference, 1, 64)
    assert row.status == "fail" and "NaN or Inf" in row.reason

    def broken():
        raise RuntimeError("no such runtime")

    row = check_backend("openvino", broken, reference, 1, 64)
    assert row.status == "fail" and row.reason == "RuntimeError: no such runtime"
