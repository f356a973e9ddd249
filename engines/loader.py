"""Load a model folder onto a runtime: the one entry point settings, commands, benchmarks and tests call."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import torch

from engines.load_options import LoadOptions
from engines.memory_budget import MemoryPlan
from scott.models import load_serving_card
from scott.pipeline import TextToImagePipeline


def default_backend(device: str | None = None) -> str:
    """The runtime a device gets when none is named: torch on CUDA, OpenVINO on the CPU (the fastest there:
    docs/benchmarks.md). A documented default, not a fallback: if it cannot run, loading fails naming why."""
    from engines.torch_backend import pick_device

    # Only the device's type counts here: whether the CUDA device asked for exists, the load says.
    target = torch.device(device) if device else pick_device()
    return "torch" if target.type == "cuda" else "openvino"


def load_pipeline(
    model_dir: str | Path, options: LoadOptions | None = None, log: Callable[[str], None] | None = None
) -> TextToImagePipeline:
    """A diffusers-format folder as a pipeline on the options' backend (default: default_backend of the device).

    log: told each long step (ONNX export, compiles, engine builds) as it starts.
    The folder's serving.json (scott.models.ServingCard), when it has one, sets the pipeline's sizes and examples;
    the decoder (options.decoder) is resolved against the folder before any export or build. A backend that cannot
    run here raises with what is missing; nothing falls back silently.
    """
    options = options or LoadOptions()
    options = options.with_backend(options.backend or default_backend(options.device))
    card = load_serving_card(model_dir)  # a malformed one fails before any export or build
    if options.backend == "openvino":
        from engines.openvino_backend import load_openvino_pipeline as load
    elif options.backend == "onnx":
        from engines.onnxruntime_backend import load_onnx_pipeline as load
    elif options.backend == "tensorrt":
        from engines.tensorrt_runtime import load_tensorrt_pipeline as load
    else:
        from engines.torch_backend import load_torch_pipeline as load
    pipeline = load(model_dir, options, log=log)
    pipeline.info = pipeline.info.with_card(card)
    return pipeline


def memory_plan(model_dir: str | Path, options: LoadOptions) -> MemoryPlan | None:
    """How loading would lay the model out in memory, checked against this process's limit before any export or
    compile (MemoryBudgetError naming the numbers when it cannot fit); None for a backend with no estimate yet
    (torch, onnx, tensorrt)."""
    if (options.backend or default_backend(options.device)) != "openvino":
        return None
    from engines.openvino_backend import memory_plan as openvino_plan

    return openvino_plan(model_dir, options)
