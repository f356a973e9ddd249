"""PyTorch backend: the diffusers modules themselves (scott.backend.ModuleBackend); fp16, channels-last and CUDA
graphs on CUDA; torch.compile (inductor) when asked for."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import torch

from engines.cuda_graphs import CudaGraphRunner
from engines.load_options import LoadOptions
from scott.backend import ModuleBackend
from scott.decoder import resolve_decoder
from scott.models import ModelBundle, load_model
from scott.pipeline import ModelInfo, TextToImagePipeline
from scott.precision import Precision


def default_dtype(device: torch.device) -> torch.dtype:
    return torch.float16 if device.type == "cuda" else torch.float32


def pick_device(requested: str | None = None) -> torch.device:
    """The device to run on: the one asked for (which must exist), else CUDA when present, else CPU."""
    if requested is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(requested)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(f"device {requested!r} asked for, but this torch build sees no CUDA device")
    return device


class TorchBackend(ModuleBackend):
    """Runs a ModelBundle's text encoder, UNet and VAE decoder with PyTorch."""

    def __init__(
        self,
        bundle: ModelBundle,
        device: torch.device,
        dtype: torch.dtype | None = None,
        cuda_graphs: bool | None = None,
        compile: bool = False,
        cache_dir: str | Path | None = None,
    ) -> None:
        """cuda_graphs: replay the text encoder, UNet and VAE decoder as CUDA graphs (default: on CUDA).

        compile: torch.compile each network (inductor's default mode, one static-shape graph per batch size; on
        CUDA ours replay the compiled kernels; max-autotune is left out: minutes of tuning per shape at SD-1.5
        size). Inductor's cache goes to <cache_dir>/inductor unless TORCHINDUCTOR_CACHE_DIR says otherwise, so a
        restart reuses the kernels (shipped model, 2 CPU cores: first compile 62 s, from the cache 6 s).
        """
        super().__init__(bundle, device)
        self.dtype = dtype or default_dtype(self.device)
        if self.device.type == "cuda":
            # Channels-last lets cuDNN pick NHWC tensor-core convolutions for the UNet. The VAE decoder
            # measured faster contiguous on an H200 (23.4 vs 28.1 ms at 512 px, benchmarks/results/).
            self.unet.to(memory_format=torch.channels_last)
        if cuda_graphs is None:
            cuda_graphs = self.device.type == "cuda"
        if cuda_graphs and self.device.type != "cuda":
            raise RuntimeError("CUDA graphs need a CUDA device; this backend runs on " + str(device))
        self.cuda_graphs = cuda_graphs
        self.per_shape = cuda_graphs or compile  # each batch size captures its graphs / compiles its kernels
        calls = {"text": self._text_forward, "unet": self._unet_forward, "vae": self._vae_forward}
        if compile:
            from engines.onnx_export import default_cache_dir

            self.name = "torch-compile"
            os.environ.setdefault("TORCHINDUCTOR_CACHE_DIR", str(Path(cache_dir or default_cache_dir()) / "inductor"))
            calls = {k: torch.compile(fn, dynamic=False) for k, fn in calls.items()}
        if cuda_graphs:
            calls = {k: CudaGraphRunner(fn) for k, fn in calls.items()}
        self._text_call, self._unet_call, self._vae_call = calls["text"], calls["unet"], calls["vae"]


def load_torch_pipeline(
    model_dir: str | Path, options: LoadOptions, log: Callable[[str], None] | None = None
) -> TextToImagePipeline:
    """The folder's modules loaded in the options' precision (auto: f16 on CUDA, f32 on the CPU) on its device."""
    target = pick_device(options.device)
    if options.threads and target.type == "cpu":
        torch.set_num_threads(options.threads)  # torch's pool is per process (its default is already one per core)
    dtype = default_dtype(target) if options.precision is Precision.AUTO else options.precision.dtype
    bundle = load_model(model_dir, dtype=dtype, decoder=resolve_decoder(model_dir, options.decoder))
    runtime = TorchBackend(bundle, target, dtype, compile=options.compile)
    return TextToImagePipeline(runtime, bundle.tokenizer, bundle.schedule, ModelInfo.from_bundle(bundle))
