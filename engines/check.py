"""`scott check`: every backend this host can run, against torch f32 on the same prompts and seeds.

Per backend: load it (building or compiling what it needs), generate a fixed prompt set at batch 1 and at the
largest batch, compare the pixels with torch f32 (mean and max difference of 255, and that every pixel is
finite), and time the stages. A backend this host cannot run is a row that says why; one that runs and misses
its precision's bound fails the check.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from engines.load_options import DEFAULT_MAX_BATCH_SIZE, LoadOptions
from engines.loader import load_pipeline
from engines.torch_backend import pick_device
from scott.images import NonFiniteImages
from scott.models import load_model
from scott.pipeline import ImageRequest, TextToImagePipeline
from scott.precision import Precision

PROMPTS = (
    "a large red circle in the top left on a blue background",
    "a small green star on a white background",
    "a medium yellow triangle in the center on a black background",
    "a purple square in the bottom right on a gray background",
    "a large cyan cross on a red background",
    "a small orange circle in the top center",
    "a pink star on a green background",
    "a blue triangle in the bottom left on a white background",
)
# (mean, max) pixel difference from torch f32, of 255, per precision. f32 runtimes differ by rounding. bf16 keeps 8
# bits of mantissa: OpenVINO's measured mean 0.5-0.9, max 13-23 on the shipped model, and mean 2.0, max 25 on the
# tiny preset's random weights (2026-12-01); fp16 keeps 11 bits, so the same bound covers it.
PARITY = {Precision.F32: (0.1, 4), Precision.BF16: (2.5, 48), Precision.F16: (2.5, 48)}
TIMING_RUNS = 5


@dataclass(frozen=True)
class CheckRow:
    backend: str
    status: str  # "pass" | "fail" | "unavailable"
    reason: str = ""
    precision: str = ""
    mean_diff: float | None = None
    max_diff: int | None = None
    ms: dict[str, float] | None = None  # text, unet, vae, total of one image at batch 1


def requests(batch: int, steps: int, size: int) -> list[ImageRequest]:
    return [
        ImageRequest(
            PROMPTS[i % len(PROMPTS)], seed=i, steps=steps, guidance_scale=8.0, gamma=0.3, width=size, height=size
        )
        for i in range(batch)
    ]


def unavailable_reason(backend: str, device: torch.device) -> str | None:
    """Why this host cannot run the backend, or None if it should."""
    if backend == "tensorrt":
        from engines.tensorrt_env import missing_requirements

        problems = missing_requirements(device)
        return "; ".join(problems) if problems else None
    if backend == "openvino" and device.type != "cpu":
        return "runs on the CPU only"
    if backend == "onnx" and device.type == "cuda":
        import onnxruntime as ort

        if "CUDAExecutionProvider" not in ort.get_available_providers():
            return "onnxruntime has no CUDA execution provider (pip install onnxruntime-gpu)"
    return None


def _images(pipeline: TextToImagePipeline, batch: int, steps: int, size: int) -> np.ndarray:
    return pipeline.generate(requests(batch, steps, size)).images


def _timings(pipeline: TextToImagePipeline, steps: int, size: int) -> dict[str, float]:
    runs = []
    for _ in range(TIMING_RUNS):
        timings = pipeline.generate(requests(1, steps, size)).timings
        runs.append({"text": timings.text, "unet": timings.unet, "vae": timings.vae})
    ms = {stage: statistics.median(r[stage] for r in runs) * 1e3 for stage in ("text", "unet", "vae")}
    return {**ms, "total": sum(ms.values())}


def check_backend(
    backend: str,
    load: Callable[[], TextToImagePipeline],
    reference: dict[int, np.ndarray],
    steps: int,
    size: int,
) -> CheckRow:
    try:
        pipeline = load()
        got = {batch: _images(pipeline, batch, steps, size) for batch in reference}
    except NonFiniteImages as exc:
        return CheckRow(backend, "fail", str(exc))
    except Exception as exc:  # a backend the host should run but cannot load or run: a failed check
        return CheckRow(backend, "fail", f"{type(exc).__name__}: {exc}")
    precision = pipeline.backend.precision
    diffs = np.concatenate([np.abs(got[b].astype(int) - reference[b].astype(int)).ravel() for b in reference])
    mean_diff, max_diff = float(diffs.mean()), int(diffs.max())
    mean_bound, max_bound = PARITY[Precision.parse(precision.split(",")[0])]  # "f16, vae f32": the f16 bound
    ok = mean_diff <= mean_bound and max_diff <= max_bound
    reason = (
        "" if ok else f"differs from torch f32 by mean {mean_diff:.2f} / max {max_diff} > {mean_bound} / {max_bound}"
    )
    return CheckRow(
        backend, "pass" if ok else "fail", reason, precision, mean_diff, max_diff, _timings(pipeline, steps, size)
    )


def run_check(
    model_dir: str | Path,
    device: str | None = None,
    max_batch_size: int = DEFAULT_MAX_BATCH_SIZE,
    backends: tuple[str, ...] = ("torch", "onnx", "openvino", "tensorrt"),
    steps: int | None = None,
    log: Callable[[str], None] | None = None,
) -> list[CheckRow]:
    """One row per backend; the reference is eager torch f32 on the same device (the exported graphs' precision).

    log: told each backend as its check starts, and each long step of loading it (exports, engine builds)."""
    say = log or (lambda _msg: None)
    target = pick_device(device)
    reference_pipeline = TextToImagePipeline.from_bundle(load_model(model_dir, dtype=torch.float32), device=target)
    info = reference_pipeline.info
    steps = steps or info.default_steps
    size = info.default_size
    reference = {batch: _images(reference_pipeline, batch, steps, size) for batch in sorted({1, max_batch_size})}
    rows = []
    for backend in backends:
        reason = unavailable_reason(backend, target)
        if reason is not None:
            rows.append(CheckRow(backend, "unavailable", reason))
            continue
        say(f"checking {backend}")

        def load(backend: str = backend) -> TextToImagePipeline:
            if backend == "torch-compile":  # minutes of compiling on a first run: asked for by name
                return load_pipeline(model_dir, LoadOptions("torch", str(target), compile=True))
            options = LoadOptions(backend, str(target), max_batch_size=max_batch_size)
            return load_pipeline(model_dir, options, log=log)

        rows.append(check_backend(backend, load, reference, steps, size))
    return rows
