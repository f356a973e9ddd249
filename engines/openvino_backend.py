"""OpenVINO backend: the model's ONNX export compiled by OpenVINO for the CPU, one compiled model per static shape
when they all fit in memory, else one per image size with a dynamic batch dimension (engines.memory_budget).

Static shapes let OpenVINO plan each network's memory and kernels once (the server warms every batch size up front);
each holds its own copy of the weights, so SD-1.5 at 512x512 needs about 3.5 GB more per batch size. A dynamic batch
holds the weights once and runs 1.2-1.6x slower on the shipped model (measured on an AMD EPYC: an image the same
bytes whatever its batch). The text encoder always takes the dynamic batch (see OpenVinoBackend).
Precision is OpenVINO's inference precision hint: `auto` is bf16 on CPUs that compute it natively (AVX512_BF16, AMX),
else f32. Compiled blobs go to OpenVINO's model cache under <cache_dir>/openvino/<version>/<precision>, so a restart
loads instead of recompiling. Each call returns a fresh torch tensor the caller owns.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from engines.graph_backend import ExportedGraphBackend, load_exported_pipeline
from engines.load_options import DEFAULT_MAX_BATCH_SIZE, LoadOptions
from engines.memory_budget import MemoryPlan, plan_for_folder
from engines.onnx_export import OnnxExport, default_cache_dir
from engines.shapes import NETWORKS, TEXT_ENCODER
from engines.threads import physical_cores
from scott.decoder import resolve_decoder
from scott.models import require_model_folder
from scott.pipeline import TextToImagePipeline
from scott.precision import Precision


def resolve_precision(core: Any, precision: Precision | str, device: str = "CPU") -> Precision:
    """The inference precision OpenVINO will run: auto -> bf16 where the device has it natively, else f32."""
    capabilities = set(core.get_property(device, "OPTIMIZATION_CAPABILITIES"))
    precision = Precision.parse(precision)
    if precision is Precision.AUTO:
        return Precision.BF16 if "BF16" in capabilities else Precision.F32
    if precision.value.upper() not in capabilities and precision is not Precision.F32:
        raise ValueError(
            f"openvino on {device} cannot run {precision} (it offers {', '.join(sorted(capabilities))}); "
            "use --precision auto or f32"
        )
    return precision


class OpenVinoBackend(ExportedGraphBackend):
    """Text encoder, UNet and VAE decoder of one ONNX export, compiled by OpenVINO on the CPU."""

    name = "openvino"

    def __init__(
        self,
        onnx_dir: str | Path,
        device: torch.device | str = "cpu",
        precision: Precision = Precision.AUTO,
        threads: int | None = None,
        cache_dir: str | Path | None = None,
        max_batch_size: int = DEFAULT_MAX_BATCH_SIZE,
        static_shapes: bool = True,
    ) -> None:
        """static_shapes: the UNet and VAE decoder compiled once per input shape (fastest), else once per image size
        with a batch dimension running 1..2 x max_batch_size (the UNet's batch doubles under classifier-free
        guidance), holding the weights once: engines.memory_budget decides which fits. The text encoder, run once
        per batch and not per step, always takes the dynamic batch: per shape it held 0.35 of the shipped model's
        1.72 GB at rest for no measurable speed (12.0 vs 12.0-12.4 ms a 1-step image, 2-core AMD EPYC)."""
        ov = _openvino()
        self.device = torch.device(device)
        if self.device.type != "cpu":
            raise RuntimeError(f"openvino backend runs on the CPU here, not {self.device}; use torch or tensorrt")
        self._ov = ov
        self.core = ov.Core()
        self.precision = resolve_precision(self.core, precision)
        # One cache folder per OpenVINO version and precision: blobs compiled under another precision hint were
        # found under the same cache key and loaded, giving wrong images (measured: f32 then bf16, max error 255).
        cache = Path(cache_dir or default_cache_dir()) / "openvino" / ov.__version__.split("-")[0] / self.precision
        self.core.set_property({"CACHE_DIR": str(cache)})
        self.cache_dir = cache
        self.export = OnnxExport.read(onnx_dir)
        self.models = {name: self.core.read_model(str(self.export.path(name))) for name in NETWORKS}
        self.config: dict[str, Any] = {
            "INFERENCE_PRECISION_HINT": self.precision.value,  # OpenVINO spells them as we do: f32, bf16, f16
            # One request at a time: LATENCY beat THROUGHPUT at batch 1 and 8 (8.3 vs 11.3 ms for a 1-step image,
            # 67 vs 107 ms for 8 images at 4 steps; shipped model, 2 cores, 2026-12-01).
            "PERFORMANCE_HINT": "LATENCY",
            # Cores this process may use (affinity, cgroups): OpenVINO's own count sees the host's in a container.
            "INFERENCE_NUM_THREADS": threads or physical_cores(),
        }
        self._requests: dict[tuple[str, tuple[tuple[int, ...], ...]], Any] = {}
        self._batch_bound = 2 * max_batch_size
        self._dynamic = {TEXT_ENCODER} if static_shapes else set(NETWORKS)  # compiled with a dynamic batch
        self.per_shape = static_shapes  # a dynamic batch compiles once per size: nothing to warm per batch

    def _request(self, network: str, inputs: dict[str, torch.Tensor]) -> Any:
        """The infer request of `network` compiled for these input shapes (compiled, or loaded from cache, once);
        with a dynamic batch, one per shape but its batch."""
        # A caller past the bound (scott eval's batches of 24; the server never is) gets that batch's own shape.
        dynamic = network in self._dynamic and next(iter(inputs.values())).shape[0] <= self._batch_bound
        key = (network, tuple(tuple(v.shape[1:] if dynamic else v.shape) for v in inputs.values()))
        if key not in self._requests:
            # A clone shares its source's weights: the compiled models of one network hold them once.
            model = self.models[network].clone()
            model.reshape({name: self._shape(tuple(v.shape), dynamic) for name, v in inputs.items()})
            compiled = self.core.compile_model(model, "CPU", self.config)
            self._requests[key] = compiled.create_infer_request()
        return self._requests[key]

    def _shape(self, shape: tuple[int, ...], dynamic: bool) -> Any:
        """The shape a model is compiled for: this one, or with its batch dimension running 1..the bound."""
        if not dynamic:
            return self._ov.PartialShape(list(shape))
        return self._ov.PartialShape([self._ov.Dimension(1, self._batch_bound), *shape[1:]])

    def _run(self, network: str, inputs: dict[str, torch.Tensor], dims: dict[str, int]) -> torch.Tensor:
        checked = self._checked_inputs(network, inputs, dims)
        request = self._request(network, checked)
        # Inputs are copied into the request (not shared): a request outlives this call and must not keep a view of
        # a tensor its caller frees.
        request.infer({name: value.numpy() for name, value in checked.items()})
        # A copy the caller owns: the request reuses its output buffer on the next call.
        return torch.from_numpy(request.get_output_tensor(0).data.copy())


def load_openvino_pipeline(
    model_dir: str | Path,
    options: LoadOptions | None = None,
    log: Callable[[str], None] | None = None,
    onnx_dir: str | Path | None = None,
    cache_dir: str | Path | None = None,
) -> TextToImagePipeline:
    """A pipeline over the model's ONNX export, compiled by OpenVINO (its blobs cached under cache_dir), laid out to
    fit this process's memory; MemoryBudgetError before any export when it cannot."""
    options = options or LoadOptions(backend="openvino")
    plan = memory_plan(model_dir, options)
    if log is not None:
        log(str(plan))

    def backend_over(root: Path) -> OpenVinoBackend:
        return OpenVinoBackend(
            root,
            options.device or "cpu",
            precision=options.precision,
            threads=options.threads,
            cache_dir=cache_dir,
            max_batch_size=options.max_batch_size,
            static_shapes=plan.static_shapes,
        )

    return load_exported_pipeline(model_dir, options, backend_over, log, onnx_dir, cache_dir)


def memory_plan(model_dir: str | Path, options: LoadOptions) -> MemoryPlan:
    """How the folder's networks would be compiled to fit this process's memory (MemoryBudgetError if they cannot)."""
    decoder = resolve_decoder(require_model_folder(model_dir), options.decoder)  # a wrong folder fails before OpenVINO
    precision = resolve_precision(_openvino().Core(), options.precision)  # loads, as what it says depends on the CPU
    return plan_for_folder(model_dir, decoder, precision, options.max_batch_size)


def _openvino() -> Any:
    try:
        import openvino as ov
    except ImportError as err:
        raise RuntimeError("openvino backend needs the `openvino` package (pip install openvino)") from err
    return ov
