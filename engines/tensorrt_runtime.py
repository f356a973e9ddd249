"""TensorRT backend: FP16 engines run on one CUDA stream, with one CUDA graph per input shape.

Engine lifecycle (as TensorRT's demo/Diffusion): load (deserialize the plan) -> activate (one scratch buffer for
the engine's activations) -> allocate (per input shape: an execution context bound to that shape once, and static
I/O buffers) -> infer (copy inputs in, execute_async_v3 or replay the shape's CUDA graph, return copies of the
outputs). A context per shape, never rebound, is what keeps a captured graph valid: a graph replayed on a context
since set up for another shape read that shape's bindings. The contexts share the scratch buffer (they run one at a
time on one stream), so memory does not grow with the number of shapes. Callers get fresh tensors, never a view of
a buffer the next call overwrites. A shape's graph is captured after WARMUP_RUNS eager runs (TensorRT allocates
and tunes lazily on the first enqueues, which must not be captured).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from engines.graph_backend import TORCH_DTYPES, unet_inputs
from engines.load_options import LoadOptions
from engines.shapes import NETWORKS, TEXT_ENCODER, UNET, VAE_DECODER, NetworkSpec, Profile, network_specs
from scott.decoder import FULL_DECODER, DecoderChoice, resolve_decoder
from scott.pipeline import TextToImagePipeline
from scott.precision import Precision

WARMUP_RUNS = 2

# (the work to capture, the stream it runs on) -> an object whose replay() re-issues that work
GraphCapture = Callable[[Callable[[], None], Any], Any]


def capture_cuda_graph(work: Callable[[], None], stream: torch.cuda.Stream) -> torch.cuda.CUDAGraph:
    # Capture does not execute: the call that captures returns the outputs of the eager run just before.
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph, stream=stream):
        work()
    return graph


def check_in_profile(network: str, profile: Profile, inputs: dict[str, torch.Tensor]) -> None:
    """Raise ValueError, naming the input and the profile's range, for an input the engine was not built for."""
    for name, lo, _, hi in profile.shapes:
        shape = tuple(inputs[name].shape)
        if not profile.contains(name, shape):
            raise ValueError(
                f"{network}.{name} has shape {shape}, outside the engine's profile {lo}..{hi}: "
                "rebuild the engines (scott build-engines --max-batch-size/--sizes) to cover it"
            )


@dataclass
class _Slot:
    """One input shape: its own execution context (bound once), static buffers and, once captured, its graph."""

    context: Any
    buffers: dict[str, torch.Tensor]
    runs: int = 0
    graph: Any = None  # torch.cuda.CUDAGraph


class TensorRTEngine:
    """One serialized engine on one device."""

    def __init__(
        self,
        plan_path: Path,
        spec: NetworkSpec,
        device: torch.device,
        use_cuda_graph: bool = True,
        capture: GraphCapture = capture_cuda_graph,
    ) -> None:
        self.plan_path = plan_path
        self.spec = spec
        self.device = device
        self.use_cuda_graph = use_cuda_graph
        self.capture = capture
        self.engine: Any = None
        self._user_managed: Any = None  # trt.ExecutionContextAllocationStrategy.USER_MANAGED
        self._scratch: torch.Tensor | None = None
        self._slots: dict[tuple[tuple[int, ...], ...], _Slot] = {}

    def load(self, runtime: Any, trt: Any) -> None:
        self._user_managed = trt.ExecutionContextAllocationStrategy.USER_MANAGED
        self.engine = runtime.deserialize_cuda_engine(self.plan_path.read_bytes())
        if self.engine is None:
            raise RuntimeError(f"TensorRT could not deserialize {self.plan_path}")
        names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
        expected = [*self.spec.input_names, *self.spec.output_names]
        if sorted(names) != sorted(expected):
            raise RuntimeError(f"{self.plan_path} has I/O tensors {names}, expected {expected}")

    def activate(self) -> None:
        """The scratch buffer every shape's context runs in: sized for the profile's largest shapes, allocated once."""
        size = int(self.engine.device_memory_size_v2)
        self._scratch = torch.empty(max(size, 1), dtype=torch.uint8, device=self.device)

    def allocate(self, shapes: dict[str, tuple[int, ...]]) -> _Slot:
        """A context bound to one set of input shapes, with its static buffers (outputs sized by TensorRT)."""
        if self._scratch is None:
            raise RuntimeError(f"{self.spec.name}: activate() before running")
        context = self.engine.create_execution_context(self._user_managed)
        if context is None:
            raise RuntimeError(f"TensorRT could not create an execution context for {self.plan_path}")
        context.set_device_memory(self._scratch.data_ptr(), self._scratch.numel())
        buffers = {}
        for tensor in self.spec.inputs:
            shape = shapes[tensor.name]
            buffers[tensor.name] = torch.empty(shape, dtype=TORCH_DTYPES[tensor.dtype], device=self.device)
            if not context.set_input_shape(tensor.name, shape):
                raise ValueError(f"{self.spec.name}.{tensor.name}: TensorRT rejected shape {shape}")
        for tensor in self.spec.outputs:
            shape = tuple(context.get_tensor_shape(tensor.name))
            if any(d < 0 for d in shape):
                raise RuntimeError(f"{self.spec.name}.{tensor.name}: TensorRT left shape {shape} unresolved")
            buffers[tensor.name] = torch.empty(shape, dtype=TORCH_DTYPES[tensor.dtype], device=self.device)
        for name, buffer in buffers.items():
            if not context.set_tensor_address(name, buffer.data_ptr()):
                raise RuntimeError(f"{self.spec.name}.{name}: TensorRT rejected the buffer address")
        return _Slot(context=context, buffers=buffers)

    def _execute(self, slot: _Slot, stream: torch.cuda.Stream) -> None:
        if not slot.context.execute_async_v3(stream.cuda_stream):
            raise RuntimeError(f"TensorRT execution of {self.spec.name} failed")

    def infer(self, inputs: dict[str, torch.Tensor], stream: torch.cuda.Stream) -> dict[str, torch.Tensor]:
        """Run on `stream` (which must be current); returns new tensors holding the outputs."""
        shapes = {t.name: tuple(inputs[t.name].shape) for t in self.spec.inputs}
        key = tuple(shapes[t.name] for t in self.spec.inputs)
        slot = self._slots.get(key)
        if slot is None:
            slot = self._slots[key] = self.allocate(shapes)
        for tensor in self.spec.inputs:
            slot.buffers[tensor.name].copy_(inputs[tensor.name], non_blocking=True)
        if slot.graph is not None:
            slot.graph.replay()
        else:
            self._execute(slot, stream)
            slot.runs += 1
            if self.use_cuda_graph and slot.runs >= WARMUP_RUNS:
                slot.graph = self.capture(lambda: self._execute(slot, stream), stream)
        return {t.name: slot.buffers[t.name].clone() for t in self.spec.outputs}


def engine_set_precision(engine_set: Any) -> str:
    """What the engines compute in, as --precision names it: "f16", or "f16, vae f32" for a guarded VAE."""
    own = {network: Precision.parse(key.precision, warn=False) for network, (_, key, _) in engine_set.engines.items()}
    main = own[UNET]
    return main if own[VAE_DECODER] == main else f"{main}, vae {own[VAE_DECODER]}"


class TensorRTBackend:
    """The three engines of one EngineSet behind scott.backend.DiffusionBackend."""

    name = "tensorrt"
    per_shape = True  # each input shape gets its context and captures its CUDA graphs

    def __init__(
        self,
        engine_dir: str | Path,
        model_dir: str | Path,
        device: str | torch.device | None = None,
        use_cuda_graphs: bool = True,
        decoder: DecoderChoice = FULL_DECODER,
    ) -> None:
        from engines.tensorrt_build import EngineSet, check_engine_set
        from engines.tensorrt_env import build_target, require_tensorrt

        trt, self.device = require_tensorrt(device)
        target = build_target(trt, self.device)
        self.engine_set = EngineSet.read(engine_dir, target)
        plans = check_engine_set(self.engine_set, model_dir, target, decoder)
        self.dims = self.engine_set.dims
        specs = network_specs(self.dims)
        self.profiles = {network: profile for network, (_, _, profile) in self.engine_set.engines.items()}
        self.precision = engine_set_precision(self.engine_set)
        self.stream = torch.cuda.Stream(self.device)
        self._runtime = trt.Runtime(trt.Logger(trt.Logger.WARNING))
        self.engines = {}
        with torch.cuda.device(self.device):
            for network in NETWORKS:
                engine = TensorRTEngine(plans[network], specs[network], self.device, use_cuda_graphs)
                engine.load(self._runtime, trt)
                engine.activate()
                self.engines[network] = engine

    def _infer(self, network: str, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        check_in_profile(network, self.profiles[network], inputs)
        caller = torch.cuda.current_stream(self.device)
        self.stream.wait_stream(caller)  # inputs queued on the caller's stream come first
        with torch.cuda.device(self.device), torch.cuda.stream(self.stream):
            inputs = {k: v.to(self.device, non_blocking=True) for k, v in inputs.items()}
            (out,) = self.engines[network].infer(inputs, self.stream).values()
        caller.wait_stream(self.stream)
        out.record_stream(caller)  # allocated on our stream, used on the caller's
        return out

    def encode_text(self, input_ids: torch.Tensor) -> torch.Tensor:
        return self._infer(TEXT_ENCODER, {"input_ids": input_ids.to(torch.int32)})

    def predict(
        self,
        latents: torch.Tensor,
        timesteps: torch.Tensor,
        text_embeddings: torch.Tensor,
        timestep_cond: torch.Tensor | None,
    ) -> torch.Tensor:
        inputs = unet_inputs(latents, timesteps, text_embeddings, timestep_cond, self.dims.guidance_embedding_dim)
        return self._infer(UNET, {name: value.to(torch.float32) for name, value in inputs.items()})

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        # The VAE's profile may stop below the UNet's batch (TensorRT's tensor volume at large sizes): decode in parts.
        (_, _, _, hi), *_ = self.profiles[VAE_DECODER].shapes
        parts = [self._infer(VAE_DECODER, {"latents": part}) for part in latents.to(torch.float32).split(hi[0])]
        return parts[0] if len(parts) == 1 else torch.cat(parts)

    def synchronize(self) -> None:
        torch.cuda.synchronize(self.device)


def load_tensorrt_pipeline(
    model_dir: str | Path,
    options: LoadOptions | None = None,
    log: Callable[[str], None] | None = None,
    engine_dir: str | Path | None = None,
    sizes: list[tuple[int, int]] | None = None,
    onnx_dir: str | Path | None = None,
    cache_dir: str | Path | None = None,
) -> TextToImagePipeline:
    """A pipeline on TensorRT engines; fails first, naming what is missing, on hosts without TensorRT or CUDA.

    options.vae_precision (f32 | f16): the VAE decoder engine's precision when engines are built here; default f16.

    Where the engines come from (the index of this host's target, engines-<GPU>-<TensorRT>.json):
    1. `engine_dir` given: the engines `scott build-engines --out engine_dir` made; never rebuilt here.
    2. `<model_dir>/engines/` with an index for this target: likewise, built beside the model.
    3. Otherwise built on first use into `<cache_dir>/engines/<model fingerprint[:16]>/` (cache_dir defaults
       to $SCOTT_CACHE_DIR or ~/.cache/scott) for options.max_batch_size and the model's sizes,
       from the ONNX export engines.onnx_export.resolve_onnx_dir finds or makes. The engine cache reuses
       plans whose key matches, so only the first start on a new GPU or TensorRT version builds.
    Every plan's sidecar is checked against this host (TensorRT version, GPU) before it is loaded.
    """
    from engines.onnx_export import default_cache_dir, model_fingerprint
    from engines.tensorrt_build import build_engines, index_path
    from engines.tensorrt_env import build_target, require_tensorrt

    options = options or LoadOptions(backend="tensorrt")
    trt, target_device = require_tensorrt(options.device)  # before any export or build work
    decoder = resolve_decoder(model_dir, options.decoder)
    model_dir = Path(model_dir)
    if engine_dir is None and index_path(model_dir / "engines", build_target(trt, target_device)).is_file():
        engine_dir = model_dir / "engines"
    if engine_dir is None:
        engine_dir = Path(cache_dir or default_cache_dir()) / "engines" / model_fingerprint(model_dir, decoder)[:16]
        build_engines(
            model_dir,
            engine_dir,
            options.max_batch_size,
            sizes,
            onnx_dir=onnx_dir,
            device=options.device,
            log=log,
            vae_precision=options.vae_precision,
            decoder=decoder,
        )
    backend = TensorRTBackend(engine_dir, model_dir, options.device, decoder=decoder)
    info = dataclasses.replace(backend.engine_set.model_info, name=model_dir.name)
    return TextToImagePipeline.over_folder(backend, model_dir, info)
