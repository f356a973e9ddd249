"""Runtimes behind one interface (scott.backend.DiffusionBackend): PyTorch, ONNX Runtime, OpenVINO, TensorRT."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import torch

from scott.decoder import resolve_decoder
from scott.models import load_model, load_serving_card
from scott.pipeline import ModelInfo, TextToImagePipeline

BACKENDS = ("torch", "onnx", "openvino", "tensorrt")
PRECISIONS = ("auto", "f32", "bf16", "f16")
_TORCH_PRECISIONS = {"f32": torch.float32, "bf16": torch.bfloat16, "f16": torch.float16}


def default_backend(device: str | None = None) -> str:
    """The runtime a device gets when none is named: torch on CUDA, OpenVINO on the CPU (the fastest there:
    docs/benchmarks.md). A documented default, not a fallback: if it cannot run, loading fails naming why."""
    from engines.torch_backend import pick_device

    # Only the device's type counts here: whether the CUDA device asked for exists, the load says.
    target = torch.device(device) if device else pick_device()
    return "torch" if target.type == "cuda" else "openvino"


def load_pipeline(
    model_dir: str | Path,
    backend: str | None = None,
    device: str | None = None,
    max_batch_size: int | None = None,
    precision: str = "auto",
    threads: int | None = None,
    vae_precision: str | None = None,
    log: Callable[[str], None] | None = None,
    compile: bool = False,
    decoder: str | None = None,
) -> TextToImagePipeline:
    """Load a diffusers-format folder and wrap it in a pipeline on the named backend (default: default_backend).

    max_batch_size: the largest batch the caller will run; TensorRT builds its engines' profiles up to it.
    precision: auto (the runtime's fast accurate choice on the device) or f32 | bf16 | f16 where the runtime has it.
    threads: CPU threads for inference (default: one per physical core); CUDA backends ignore it.
    vae_precision: f32 | f16 for TensorRT's VAE decoder engine (f32 guards against fp16 overflow); tensorrt only.
    log: told each long step (ONNX export, engine builds) as it starts.
    compile: torch.compile the networks (inductor, cached on disk); torch only.
    decoder: full (default: the VAE's) | tiny (the folder's vae_tiny/) | the path of an AutoencoderTiny folder;
    on every backend (its ONNX export and engines are keyed by the decoder's weights too).
    The folder's serving.json (scott.models.ServingCard), when it has one, sets the pipeline's sizes and examples.
    A backend that cannot run here raises with what is missing; nothing falls back silently.
    """
    card = load_serving_card(model_dir)  # a malformed one fails before any export or build
    pipeline = _runtime_pipeline(
        model_dir, backend, device, max_batch_size, precision, threads, vae_precision, log, compile, decoder
    )
    pipeline.info = pipeline.info.with_card(card)
    return pipeline


def _runtime_pipeline(
    model_dir: str | Path,
    backend: str | None,
    device: str | None,
    max_batch_size: int | None,
    precision: str,
    threads: int | None,
    vae_precision: str | None,
    log: Callable[[str], None] | None,
    compile: bool,
    decoder: str | None,
) -> TextToImagePipeline:
    backend = backend or default_backend(device)
    if vae_precision is not None and backend != "tensorrt":
        raise ValueError(f"vae_precision applies to the tensorrt backend, not {backend}")
    if compile and backend != "torch":
        raise ValueError(f"compile applies to the torch backend, not {backend}")
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}; available: {', '.join(BACKENDS)}")
    if precision not in PRECISIONS:
        raise ValueError(f"unknown precision {precision!r}; available: {', '.join(PRECISIONS)}")
    choice = resolve_decoder(model_dir, decoder)  # before any export or build: a wrong folder fails at once
    if backend == "openvino":  # compiled from the ONNX export: engines.openvino_backend
        from engines.openvino_backend import load_openvino_pipeline

        return load_openvino_pipeline(model_dir, device, precision=precision, threads=threads, log=log, decoder=choice)
    export_precision = {"onnx": "f32", "tensorrt": "f16"}.get(backend)  # their graphs' / engines' own
    if export_precision is not None and precision not in ("auto", export_precision):
        raise ValueError(f"the {backend} backend runs its export's own precision; use --precision auto")
    if backend == "onnx":  # export rule: engines.onnx_export.resolve_onnx_dir
        from engines.onnxruntime_backend import load_onnx_pipeline

        return load_onnx_pipeline(model_dir, device, threads=threads, log=log, decoder=choice)
    if backend == "tensorrt":  # engine rule: engines.tensorrt_runtime.load_tensorrt_pipeline
        from engines.tensorrt_runtime import load_tensorrt_pipeline

        return load_tensorrt_pipeline(
            model_dir, device, max_batch_size=max_batch_size, vae_precision=vae_precision, log=log, decoder=choice
        )
    from engines.torch_backend import TorchBackend, default_dtype, pick_device

    target = pick_device(device)
    if threads and target.type == "cpu":
        torch.set_num_threads(threads)  # torch's pool is per process (its default is already one per core)
    dtype = default_dtype(target) if precision == "auto" else _TORCH_PRECISIONS[precision]
    bundle = load_model(model_dir, dtype=dtype, decoder=choice)
    runtime = TorchBackend(bundle, target, dtype, compile=compile)
    return TextToImagePipeline(runtime, bundle.tokenizer, bundle.schedule, ModelInfo.from_bundle(bundle))
