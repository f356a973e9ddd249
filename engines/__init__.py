"""Runtimes behind one interface (scott.backend.DiffusionBackend): PyTorch, ONNX Runtime, TensorRT."""

from __future__ import annotations

from pathlib import Path

from scott.models import load_model
from scott.pipeline import ModelInfo, TextToImagePipeline

BACKENDS = ("torch", "onnx", "tensorrt")


def load_pipeline(
    model_dir: str | Path, backend: str = "torch", device: str | None = None, max_batch_size: int | None = None
) -> TextToImagePipeline:
    """Load a diffusers-format folder and wrap it in a pipeline on the named backend.

    max_batch_size: the largest batch the caller will run; TensorRT builds its engines' profiles up to it.
    A backend that cannot run here raises with what is missing; nothing falls back silently.
    """
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}; available: {', '.join(BACKENDS)}")
    if backend == "onnx":  # export rule: engines.onnx_export.resolve_onnx_dir
        from engines.onnxruntime_backend import load_onnx_pipeline

        return load_onnx_pipeline(model_dir, device)
    if backend == "tensorrt":  # engine rule: engines.tensorrt_runtime.load_tensorrt_pipeline
        from engines.tensorrt_runtime import load_tensorrt_pipeline

        return load_tensorrt_pipeline(model_dir, device, max_batch_size=max_batch_size)
    from engines.torch_backend import TorchBackend, default_dtype, pick_device

    target = pick_device(device)
    bundle = load_model(model_dir, dtype=default_dtype(target))
    runtime = TorchBackend(bundle, target)
    return TextToImagePipeline(runtime, bundle.tokenizer, bundle.schedule, ModelInfo.from_bundle(bundle))
