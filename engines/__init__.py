"""Runtimes behind one interface (scott.backend.DiffusionBackend): torch now; ONNX Runtime, TensorRT next."""

from __future__ import annotations

from pathlib import Path

from scott.models import load_model
from scott.pipeline import ModelInfo, TextToImagePipeline

BACKENDS = ("torch",)


def load_pipeline(model_dir: str | Path, backend: str = "torch", device: str | None = None) -> TextToImagePipeline:
    """Load a diffusers-format folder and wrap it in a pipeline on the named backend.

    A backend that cannot run here raises with what is missing; nothing falls back silently.
    """
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}; available: {', '.join(BACKENDS)}")
    from engines.torch_backend import TorchBackend, default_dtype, pick_device

    target = pick_device(device)
    bundle = load_model(model_dir, dtype=default_dtype(target))
    runtime = TorchBackend(bundle, target)
    return TextToImagePipeline(runtime, bundle.tokenizer, bundle.schedule, ModelInfo.from_bundle(bundle))
