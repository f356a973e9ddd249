"""Export a model's text encoder, UNet and VAE decoder to ONNX (fp32, dynamic batch and latent size).

Each graph is checked with onnx.checker and run under ONNX Runtime against PyTorch on the same
inputs at two shapes (so the dynamic axes are exercised), and a manifest.json beside the files
records names, shapes, dynamic axes, the model's ModelInfo and dims, versions and the errors.
The manifest is written last: a folder with one holds a complete, verified export.

Exporter: torch.onnx's TorchScript exporter (dynamo=False), the one that exports diffusers UNets
most reliably. Graphs over ~2 GB (SD-1.5's UNet in fp32) use ONNX external data: the weights
go to `<network>.onnx.data` beside the graph.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import numpy as np
import torch

from engines.engine_cache import exclusive, onnx_sha256, read_versioned_json
from engines.shapes import (
    NETWORKS,
    TEXT_ENCODER,
    UNET,
    VAE_DECODER,
    ModelDims,
    NetworkSpec,
    decoder_peak_channels,
    network_specs,
)
from scott.atomic import write_json_atomic
from scott.decoder import FULL_DECODER, DecoderChoice, latent_scaling
from scott.models import SUBFOLDERS, ModelBundle, load_model
from scott.pipeline import ModelInfo
from scott.precision import Precision
from scott.schedule import guidance_scale_embedding

MANIFEST = "manifest.json"
MANIFEST_FORMAT = 1
DEFAULT_OPSET = 17
DEFAULT_TOLERANCE = 1e-3  # fp32 ONNX Runtime vs fp32 PyTorch, max abs error
FP16_TOLERANCE = 5e-2  # fp16 graphs vs the same fp16 modules in PyTorch: each runtime rounds its own way
EXPORT_PRECISIONS = (Precision.F32, Precision.F16)  # f16: TensorRT 11's strongly typed fp16 engines' graphs
EXTERNAL_DATA_BYTES = 1_500_000_000  # protobuf's 2 GiB limit, with headroom for the graph itself


class ExportError(RuntimeError):
    """An export failed its checks (checker, or ONNX Runtime disagreeing with PyTorch)."""


# -- the graphs as exported ------------------------------------------------------------------------


class TextEncoderGraph(torch.nn.Module):
    """int32 token ids -> CLIP's last hidden states (what SD conditions on)."""

    def __init__(self, text_encoder: torch.nn.Module) -> None:
        super().__init__()
        self.text_encoder = text_encoder

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        return self.text_encoder(input_ids.to(torch.int64), return_dict=False)[0]


class UNetGraph(torch.nn.Module):
    """One UNet call with per-sample timesteps and, where the UNet has one, the guidance embedding."""

    def __init__(self, unet: torch.nn.Module) -> None:
        super().__init__()
        self.unet = unet

    def forward(
        self,
        sample: torch.Tensor,
        timestep: torch.Tensor,
        encoder_hidden_states: torch.Tensor,
        timestep_cond: torch.Tensor | None = None,
    ) -> torch.Tensor:
        return self.unet(
            sample,
            timestep,
            encoder_hidden_states=encoder_hidden_states,
            timestep_cond=timestep_cond,
            return_dict=False,
        )[0]


class VaeDecoderGraph(torch.nn.Module):
    """Diffusion latents -> images in [-1, 1], undoing the VAE's latent scaling (and shift) inside the graph."""

    def __init__(self, vae: torch.nn.Module) -> None:
        super().__init__()
        self.vae = vae
        self.scaling, self.shift = latent_scaling(vae.config)

    def forward(self, latents: torch.Tensor) -> torch.Tensor:
        # As TorchBackend.decode: latents / scaling_factor + shift_factor.
        return self.vae.decode(latents / self.scaling + self.shift, return_dict=False)[0]


class Float32IO(torch.nn.Module):
    """An fp16 graph behind fp32 inputs and outputs: the casts are in the graph, so every runtime binds the same
    tensors whatever the graph computes in (TensorRT 11's strongly typed networks take the precision from here)."""

    def __init__(self, graph: torch.nn.Module) -> None:
        super().__init__()
        self.graph = graph

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        return self.graph(*(x.half() if x.is_floating_point() else x for x in inputs)).float()


def graph_modules(bundle: ModelBundle) -> dict[str, torch.nn.Module]:
    modules: dict[str, torch.nn.Module] = {
        TEXT_ENCODER: TextEncoderGraph(bundle.text_encoder).eval(),
        UNET: UNetGraph(bundle.unet).eval(),
        VAE_DECODER: VaeDecoderGraph(bundle.decoder).eval(),  # the full VAE's or a tiny one
    }
    if bundle.unet.dtype == torch.float16:
        modules = {name: Float32IO(module).eval() for name, module in modules.items()}
    return modules


def model_dims(bundle: ModelBundle, info: ModelInfo) -> ModelDims:
    text_dim = int(bundle.text_encoder.config.hidden_size)
    cross = int(bundle.unet.config.cross_attention_dim)
    if text_dim != cross:
        raise ValueError(f"text encoder width {text_dim} != UNet cross-attention width {cross}")
    return ModelDims.from_info(info, text_dim)


def sample_inputs(
    spec: NetworkSpec, dims: ModelDims, batch: int, width: int, height: int, bundle: ModelBundle, seed: int = 0
) -> dict[str, torch.Tensor]:
    """Realistic inputs for one network at one shape: real token ids, timesteps and guidance embeddings."""
    gen = torch.Generator().manual_seed(seed)
    values = dims.latent_dims(batch, width, height)
    inputs: dict[str, torch.Tensor] = {}
    for tensor in spec.inputs:
        shape = tensor.concrete(values)
        if tensor.name == "input_ids":
            prompts = ["a red circle on a blue background", "", "a photo of a cat wearing a hat"] * batch
            ids = bundle.tokenizer(
                prompts[:batch], padding="max_length", max_length=dims.text_tokens, truncation=True, return_tensors="pt"
            )["input_ids"]
            inputs[tensor.name] = ids.to(torch.int32)
        elif tensor.name == "timestep":
            inputs[tensor.name] = torch.randint(0, 1000, shape, generator=gen).to(torch.float32)
        elif tensor.name == "timestep_cond":
            w = 1.0 + 9.0 * torch.rand(batch, generator=gen)
            inputs[tensor.name] = guidance_scale_embedding(w, shape[1])
        else:
            inputs[tensor.name] = torch.randn(shape, generator=gen)
    return inputs


# -- export ----------------------------------------------------------------------------------------


def _package_versions() -> dict[str, str]:
    found = {}
    for name in ("torch", "onnx", "onnxruntime", "diffusers", "transformers"):
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            found[name] = "not installed"
    return found


def model_fingerprint(model_dir: str | Path, decoder: DecoderChoice = FULL_DECODER) -> str:
    """sha256 over the model folder's files (the parts an export depends on), paths included, and over the tiny
    decoder's when one is served: what names and checks exports and engines, so each decoder gets its own."""
    root = Path(model_dir)
    digest = hashlib.sha256()
    for sub in SUBFOLDERS:
        for path in sorted(p for p in (root / sub).rglob("*") if p.is_file()):
            digest.update(str(path.relative_to(root)).encode() + b"\0")
            with path.open("rb") as handle:
                digest.update(hashlib.file_digest(handle, "sha256").digest())
    if decoder.is_tiny:
        digest.update(b"tiny-decoder\0" + str(decoder.fingerprint()).encode())
    return digest.hexdigest()


def _export_graph(
    module: torch.nn.Module,
    inputs: dict[str, torch.Tensor],
    spec: NetworkSpec,
    path: Path,
    opset: int,
    external_data: bool,
) -> None:
    """torch.onnx.export to a scratch folder, then re-save as one graph (+ one .data file if external)."""
    import onnx

    with tempfile.TemporaryDirectory(prefix=f".{spec.name}-", dir=path.parent) as scratch:
        raw = Path(scratch) / spec.file_name
        torch.onnx.export(
            module,
            tuple(inputs[name] for name in spec.input_names),
            str(raw),
            input_names=spec.input_names,
            output_names=spec.output_names,
            dynamic_axes=spec.dynamic_axes(),
            opset_version=opset,
            do_constant_folding=True,
            dynamo=False,
        )
        # Graphs over 2 GB come out with one file per tensor; loading pulls them in, saving consolidates.
        model = onnx.load(str(raw))
    data_name = f"{path.name}.data"
    (path.parent / data_name).unlink(missing_ok=True)
    if external_data:
        onnx.save_model(model, str(path), save_as_external_data=True, all_tensors_to_one_file=True, location=data_name)
    else:
        onnx.save_model(model, str(path))
    onnx.checker.check_model(str(path), full_check=True)


def _max_abs_error(module: torch.nn.Module, session: Any, spec: NetworkSpec, inputs: dict[str, torch.Tensor]) -> float:
    with torch.inference_mode():
        expected = module(*(inputs[name] for name in spec.input_names)).numpy()
    (actual,) = session.run(spec.output_names, {name: t.numpy() for name, t in inputs.items()})
    if actual.shape != expected.shape:
        raise ExportError(f"{spec.name}: ONNX output shape {actual.shape} != PyTorch {expected.shape}")
    return float(np.abs(actual - expected).max())


def export_onnx(
    model_dir: str | Path,
    out_dir: str | Path,
    *,
    opset: int = DEFAULT_OPSET,
    external_data: bool | None = None,
    tolerance: float | None = None,
    log: Callable[[str], None] | None = None,
    precision: Precision = Precision.F32,
    decoder: DecoderChoice = FULL_DECODER,
) -> dict[str, Any]:
    """Export the model at model_dir into out_dir (text_encoder.onnx, unet.onnx, vae_decoder.onnx, manifest.json).

    decoder: the full VAE's (default) or a tiny one (scott.decoder), exported as vae_decoder.onnx either way.
    precision: fp32, or fp16 (weights and math in fp16, inputs and outputs still fp32: Float32IO), what
    TensorRT 11 builds fp16 engines from. external_data: None decides per graph by size; True forces it (to test
    the path SD-scale UNets take). Raises ExportError if a graph's max abs error against PyTorch in the same
    precision exceeds tolerance (default: DEFAULT_TOLERANCE for fp32, FP16_TOLERANCE for fp16). Returns the manifest.
    """
    import onnxruntime as ort

    precision = Precision.parse(precision)
    if precision not in EXPORT_PRECISIONS:  # before anything is written
        raise ValueError(f"export precision must be one of {', '.join(EXPORT_PRECISIONS)}, got {precision.value!r}")
    say = log or (lambda _msg: None)
    model_dir, out = Path(model_dir), Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / MANIFEST).unlink(missing_ok=True)  # the folder is incomplete until the new manifest lands
    tolerance = (
        tolerance if tolerance is not None else FP16_TOLERANCE if precision == Precision.F16 else DEFAULT_TOLERANCE
    )
    bundle = load_model(model_dir, dtype=precision.dtype, decoder=decoder)
    if precision == Precision.F16:
        # transformers' SDPA path traces an fp32 mask into the fp16 CLIP graph (ONNX's checker refuses the
        # LayerNormalization it feeds); its eager attention traces in one dtype.
        bundle.text_encoder.set_attn_implementation("eager")
    info = ModelInfo.from_bundle(bundle)
    dims = model_dims(bundle, info)
    specs = network_specs(dims)
    modules = graph_modules(bundle)
    scaling, shift = latent_scaling(bundle.decoder.config)  # for the manifest
    # Two shapes: batch 2 at the default size, batch 1 non-square at the smallest: both dynamic axes run.
    checks = [(2, info.default_size, info.default_size), (1, info.min_size, info.default_size)]
    options = ort.SessionOptions()
    options.log_severity_level = 3

    networks: dict[str, Any] = {}
    for name in NETWORKS:
        spec, module = specs[name], modules[name]
        path = out / spec.file_name
        param_bytes = sum(p.numel() * p.element_size() for p in module.parameters())
        external = external_data if external_data is not None else param_bytes > EXTERNAL_DATA_BYTES
        started = time.perf_counter()
        say(f"exporting {name} ({param_bytes / 1e6:.1f} MB of weights{', external data' if external else ''})")
        _export_graph(module, sample_inputs(spec, dims, *checks[0], bundle), spec, path, opset, external)
        export_s = time.perf_counter() - started

        session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        errors = []
        for i, (batch, width, height) in enumerate(checks):
            inputs = sample_inputs(spec, dims, batch, width, height, bundle, seed=i + 1)
            errors.append(
                {
                    "batch": batch,
                    "width": width,
                    "height": height,
                    "max_abs_error": _max_abs_error(module, session, spec, inputs),
                }
            )
        del session
        worst = max(e["max_abs_error"] for e in errors)
        say(f"  {name}: max abs error vs PyTorch {worst:.2e} ({export_s:.1f}s)")
        if not worst <= tolerance:
            raise ExportError(f"{name}: ONNX Runtime differs from PyTorch by {worst:.3e} > tolerance {tolerance:.1e}")
        networks[name] = {
            "file": spec.file_name,
            "external_data": f"{spec.file_name}.data" if external else None,
            "sha256": onnx_sha256(path),
            "inputs": [t.to_json() for t in spec.inputs],
            "outputs": [t.to_json() for t in spec.outputs],
            "dynamic_axes": {k: {str(a): d for a, d in v.items()} for k, v in spec.dynamic_axes().items()},
            "max_abs_error": worst,
            "checks": errors,
            "export_seconds": round(export_s, 2),
        }

    manifest = {
        "format": MANIFEST_FORMAT,
        "source": {
            "model_dir": str(model_dir.resolve()),
            "fingerprint": model_fingerprint(model_dir, decoder),
            "decoder": {"kind": decoder.kind, "fingerprint": decoder.fingerprint()},
        },
        "model_info": info.model_facts(),
        "dims": dims.to_json(),
        "vae": {
            "scaling_factor": scaling,
            "shift_factor": shift,
            "peak_channels": decoder_peak_channels(bundle.decoder.config),  # engines.shapes
        },
        "precision": precision,
        "exporter": "torch.onnx.export (TorchScript, dynamo=False)",
        "opset": opset,
        "tolerance": tolerance,
        "versions": _package_versions(),
        "networks": networks,
        "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    write_json_atomic(out / MANIFEST, manifest)
    return manifest


# -- reading an export back ------------------------------------------------------------------------


@dataclass(frozen=True)
class OnnxExport:
    """A verified export folder, as runtimes read it: `OnnxExport.read` is the one reader of a manifest."""

    root: Path
    manifest: dict[str, Any]

    @staticmethod
    def exists(root: str | Path) -> bool:
        """Whether root holds an export (a manifest; `read` checks the rest)."""
        return (Path(root) / MANIFEST).is_file()

    @classmethod
    def read(cls, root: str | Path) -> OnnxExport:
        """The export in root, after checking that its manifest is complete and names files that exist."""
        root = Path(root)
        path = root / MANIFEST
        missing = f"{root} holds no ONNX export (no {MANIFEST}); run `scott export`"
        export = cls(root, read_versioned_json(path, MANIFEST_FORMAT, missing))
        try:  # parse every part a runtime reads now, so a bad manifest fails here, naming its file
            _ = export.dims, export.info(), export.fingerprint
            files = [export.path(name) for name in NETWORKS]
        except (KeyError, TypeError) as err:
            raise ValueError(f"{path} is not a complete export manifest ({type(err).__name__}: {err})") from err
        for file in files:
            if not file.is_file():
                raise FileNotFoundError(f"{root}: the manifest names {file.name}, which is missing")
        return export

    @cached_property
    def dims(self) -> ModelDims:
        return ModelDims(**self.manifest["dims"])

    @property
    def precision(self) -> Precision:
        """What the graphs compute in: f32, or f16 behind f32 inputs and outputs."""
        # Exports written before the one vocabulary say fp32 / fp16: read as f32 / f16.
        return Precision.parse(self.manifest.get("precision", Precision.F32), warn=False)

    @cached_property  # read on every network call
    def specs(self) -> dict[str, NetworkSpec]:
        return network_specs(self.dims)

    @property
    def fingerprint(self) -> str:
        return str(self.manifest["source"]["fingerprint"])

    @property
    def decoder_kind(self) -> str:
        """full | tiny: which decoder vae_decoder.onnx is."""
        return str(self.manifest["source"].get("decoder", {}).get("kind", "full"))

    def info(self, name: str | None = None) -> ModelInfo:
        fields = dict(self.manifest["model_info"])
        if name is not None:
            fields["name"] = name
        return ModelInfo(**fields)

    def path(self, network: str) -> Path:
        return self.root / self.manifest["networks"][network]["file"]


def default_cache_dir() -> Path:
    """$SCOTT_CACHE_DIR, else $XDG_CACHE_HOME/scott, else ~/.cache/scott."""
    if os.environ.get("SCOTT_CACHE_DIR"):
        return Path(os.environ["SCOTT_CACHE_DIR"])
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "scott"


def resolve_onnx_dir(
    model_dir: str | Path,
    onnx_dir: str | Path | None = None,
    cache_dir: str | Path | None = None,
    log: Callable[[str], None] | None = None,
    precision: Precision = Precision.F32,
    decoder: DecoderChoice = FULL_DECODER,
) -> Path:
    """The folder holding the ONNX export of the model at model_dir (with `decoder`), exporting it on first use.

    precision: the export's (fp32; fp16 for TensorRT 11's strongly typed fp16 engines). The rule, in order:
    1. `onnx_dir` given: used if it holds an export (manifest.json), else the model is exported into it.
    2. `<model_dir>/onnx/` holding an export: used (what `scott export --model M --out M/onnx` makes,
       so an export can ship beside its weights).
    3. Otherwise the user cache, `<cache_dir>/onnx/<fingerprint[:16]>/` (`...-fp16/` for fp16; cache_dir
       defaults to $SCOTT_CACHE_DIR or ~/.cache/scott): exported on first use under a file lock, reused after.
    An export found in 1 or 2 must come from these weights (the manifest's fingerprint, which covers a tiny
    decoder too), else this raises instead of serving graphs of another model; a <model_dir>/onnx made with
    another decoder is passed over for the cache, like one of another precision.
    """
    model_dir, precision = Path(model_dir), Precision.parse(precision)
    fingerprint = model_fingerprint(model_dir, decoder)
    candidates = [Path(onnx_dir)] if onnx_dir is not None else [model_dir / "onnx"]
    for candidate in candidates:
        if OnnxExport.exists(candidate):
            found = OnnxExport.read(candidate)
            wanted = {"precision": precision.value, "decoder": decoder.kind}
            made = {"precision": found.precision.value, "decoder": found.decoder_kind}
            if made != wanted:
                if onnx_dir is not None:
                    raise ValueError(f"the ONNX export in {candidate} is {made}, {wanted} is needed")
                continue  # <model_dir>/onnx holds another precision or decoder: the cache has this one
            if found.fingerprint != fingerprint:
                raise ValueError(
                    f"the ONNX export in {candidate} was made from other weights than {model_dir} "
                    f"(fingerprint {found.fingerprint[:12]} != {fingerprint[:12]}): re-run `scott export`"
                )
            return candidate
    if onnx_dir is not None:
        export_onnx(model_dir, onnx_dir, log=log, precision=precision, decoder=decoder)
        return Path(onnx_dir)

    name = fingerprint[:16] if precision == Precision.F32 else f"{fingerprint[:16]}-{precision}"
    target = Path(cache_dir or default_cache_dir()) / "onnx" / name
    if OnnxExport.exists(target):
        return target
    with exclusive(target.with_suffix(".lock")):
        if OnnxExport.exists(target):  # exported by another process while we waited
            return target
        target.parent.mkdir(parents=True, exist_ok=True)
        scratch = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
        scratch.chmod(0o755)  # mkdtemp's 0700 would keep the export from a server running as another user
        try:
            export_onnx(model_dir, scratch, log=log, precision=precision, decoder=decoder)
            shutil.rmtree(target, ignore_errors=True)  # a partial folder from a crashed export
            os.replace(scratch, target)
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
    return target
