"""ONNX Runtime backend: the exported fp32 graphs on the CPU execution provider (CUDA EP when asked for).

Each call binds the caller's torch tensors as inputs and a fresh torch tensor as the output
through ORT's I/O binding, so no copies are made on the way in or out and what is returned
belongs to the caller. CPU sessions use one intra-op thread per physical core (hyper-threads
slow convolutions down) and every graph optimization.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from engines.graph_backend import TORCH_DTYPES, ExportedGraphBackend, load_exported_pipeline
from engines.load_options import LoadOptions
from engines.onnx_export import OnnxExport
from engines.shapes import NETWORKS
from engines.threads import physical_cores
from scott.pipeline import TextToImagePipeline
from scott.precision import Precision


def session_options(threads: int | None = None) -> Any:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL  # the graphs are chains: one op at a time
    options.intra_op_num_threads = threads or physical_cores()
    options.inter_op_num_threads = 1
    # Idle ORT threads would busy-wait between runs, stealing the cores from torch's sampler math and the server's
    # threads between UNet calls; on 2 cores that made a whole 1-step image ~3x slower than its stages' sum.
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.log_severity_level = 3
    return options


def execution_providers(device: torch.device) -> list[Any]:
    """ORT providers for a torch device; raises naming what is missing instead of falling back."""
    import onnxruntime as ort

    available = ort.get_available_providers()
    if device.type == "cpu":
        return ["CPUExecutionProvider"]
    if device.type == "cuda":
        if "CUDAExecutionProvider" not in available:
            raise RuntimeError(
                f"onnx backend on {device} needs onnxruntime-gpu (CUDAExecutionProvider); this onnxruntime "
                f"{ort.__version__} has {', '.join(available)}"
            )
        if not torch.cuda.is_available():
            raise RuntimeError(f"onnx backend on {device} needs a CUDA build of torch that sees a GPU")
        return [("CUDAExecutionProvider", {"device_id": device.index or 0}), "CPUExecutionProvider"]
    raise RuntimeError(f"onnx backend supports cpu and cuda devices, not {device}")


class OnnxRuntimeBackend(ExportedGraphBackend):
    """Text encoder, UNet and VAE decoder of one ONNX export, as ORT sessions on one device."""

    name = "onnx"
    precision = Precision.F32  # the export's f32 graphs

    def __init__(self, onnx_dir: str | Path, device: torch.device | str = "cpu", threads: int | None = None) -> None:
        import onnxruntime as ort

        self.device = torch.device(device)
        if self.device.type == "cuda" and self.device.index is None:
            self.device = torch.device("cuda", 0)
        self.export = OnnxExport.read(onnx_dir)
        self.dims = self.export.dims
        providers = execution_providers(self.device)
        options = session_options(threads)
        self.sessions = {}
        for name in NETWORKS:
            session = ort.InferenceSession(str(self.export.path(name)), options, providers=providers)
            if self.device.type == "cuda" and "CUDAExecutionProvider" not in session.get_providers():
                # ORT drops to the CPU quietly when the CUDA libraries fail to load.
                raise RuntimeError(f"onnxruntime could not start the CUDA provider for {name}; check CUDA/cuDNN")
            self._check_io(name, session)
            self.sessions[name] = session

    def _check_io(self, name: str, session: Any) -> None:
        spec = self.specs[name]
        got = ([i.name for i in session.get_inputs()], [o.name for o in session.get_outputs()])
        if got != (spec.input_names, spec.output_names):
            raise ValueError(f"{self.export.path(name)} has I/O {got}, expected {spec.input_names, spec.output_names}")

    # -- one network call through I/O binding -----------------------------------------------------

    def _run(self, network: str, inputs: dict[str, torch.Tensor], dims: dict[str, int]) -> torch.Tensor:
        spec = self.specs[network]
        session = self.sessions[network]
        binding = session.io_binding()
        device_type, device_id = self.device.type, self.device.index or 0
        keep_alive = list(self._checked_inputs(network, inputs, dims).values())  # they must outlive the run
        for tensor_spec, value in zip(spec.inputs, keep_alive, strict=True):
            binding.bind_input(
                tensor_spec.name,
                device_type,
                device_id,
                np.dtype(tensor_spec.dtype),
                list(value.shape),
                value.data_ptr(),
            )
        (out_spec,) = spec.outputs
        out = torch.empty(out_spec.concrete(dims), dtype=TORCH_DTYPES[out_spec.dtype], device=self.device)
        binding.bind_output(
            out_spec.name, device_type, device_id, np.dtype(out_spec.dtype), list(out.shape), out.data_ptr()
        )
        if self.device.type == "cuda":
            # ORT runs on its own stream: let it see inputs torch queued on the current one.
            torch.cuda.current_stream(self.device).synchronize()
        session.run_with_iobinding(binding)
        return out


def load_onnx_pipeline(
    model_dir: str | Path,
    options: LoadOptions | None = None,
    log: Callable[[str], None] | None = None,
    onnx_dir: str | Path | None = None,
    cache_dir: str | Path | None = None,
) -> TextToImagePipeline:
    """A pipeline over the model's ONNX export, run by ONNX Runtime; the weights are never loaded into torch."""
    options = options or LoadOptions(backend="onnx")

    def backend_over(root: Path) -> OnnxRuntimeBackend:
        return OnnxRuntimeBackend(root, torch.device(options.device or "cpu"), threads=options.threads)

    return load_exported_pipeline(model_dir, options, backend_over, log, onnx_dir, cache_dir)
