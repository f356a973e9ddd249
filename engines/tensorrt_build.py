"""Build FP16 TensorRT engines from a model's ONNX export into an engine cache, and index them.

`build_engines` plans one engine per network (profile from ModelInfo, max batch and sizes; key
from the ONNX hash, the build target and the profile), builds what the cache lacks under the
key's lock, and writes the build target's index (`engines-<target>.json`), which the runtime reads.
One folder can hold the engines of several targets (GPU models, TensorRT versions: pods sharing a
volume): each has its own index and its own timing cache. Only `build_plan` calls TensorRT;
everything else runs (and is tested) without it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from engines.engine_cache import BuildTarget, EngineCache, EngineKey, exclusive, onnx_sha256, read_versioned_json
from engines.load_options import DEFAULT_MAX_BATCH_SIZE
from engines.onnx_export import OnnxExport, model_fingerprint, resolve_onnx_dir
from engines.shapes import NETWORKS, VAE_DECODER, ModelDims, Profile, build_profiles
from scott.atomic import write_bytes_atomic, write_json_atomic
from scott.decoder import FULL_DECODER, DecoderChoice
from scott.pipeline import ModelInfo
from scott.precision import Precision

INDEX_FORMAT = 2
ENGINE_PRECISIONS = (Precision.F16, Precision.F32)  # what an engine here is built in

# (onnx path, plan path to write, profile, precision, timing cache path) -> None
PlanBuilder = Callable[[Path, Path, Profile, Precision, Path], None]


@dataclass(frozen=True)
class PlannedEngine:
    network: str
    onnx_path: Path
    profile: Profile
    key: EngineKey


def plan_engines(
    export: OnnxExport,
    target: BuildTarget,
    max_batch_size: int = DEFAULT_MAX_BATCH_SIZE,
    sizes: Sequence[tuple[int, int]] | None = None,
    precision: Precision = Precision.F16,
    opt_batch_size: int | None = None,
    vae_precision: Precision | None = None,
    graphs: Mapping[Precision, OnnxExport] | None = None,
) -> dict[str, PlannedEngine]:
    """The engine each network needs on this target: its profile and cache key (no building).

    vae_precision: the VAE decoder's own (fp32 is the usual guard against fp16 overflow there); default precision.
    graphs: for strongly typed builds, the export of each precision a network is built in (its graph is the one
    whose precision the engine computes); default: every network from `export`.
    """
    precision = Precision.parse(precision)
    vae_precision = Precision.parse(vae_precision) if vae_precision else None
    for value in (precision, vae_precision or precision):
        if value not in ENGINE_PRECISIONS:
            raise ValueError(f"precision must be one of {', '.join(ENGINE_PRECISIONS)}, got {value!r}")
    vae_peak = export.manifest.get("vae", {}).get("peak_channels")  # exports before it was recorded: no limit
    profiles = build_profiles(export.info(), export.dims.text_dim, max_batch_size, sizes, opt_batch_size, vae_peak)
    planned = {}
    for network in NETWORKS:
        own = vae_precision if network == VAE_DECODER and vae_precision else precision
        source = export
        if graphs is not None:
            if own not in graphs or graphs[own].precision != own:
                raise ValueError(f"{network} is built in {own}: a strongly typed build needs the {own} export")
            source = graphs[own]
        onnx_path = source.path(network)
        key = EngineKey.create(network, onnx_sha256(onnx_path), target, own, profiles[network].to_json())
        planned[network] = PlannedEngine(network, onnx_path, profiles[network], key)
    return planned


# -- the index the runtime reads -------------------------------------------------------------------


def index_path(root: Path, target: BuildTarget) -> Path:
    """The index of the engines built for `target` under root."""
    return root / f"engines-{target.slug()}.json"


def timing_cache_path(root: Path, target: BuildTarget) -> Path:
    """The timing cache of `target`: TensorRT refuses (or mis-tunes with) another GPU's or version's timings."""
    return root / f"timing-{target.slug()}.cache"


@dataclass(frozen=True)
class EngineSet:
    """Built engines of one model for one target: where the plans are and what they accept."""

    root: Path
    target: BuildTarget
    model_fingerprint: str
    model_info: ModelInfo
    dims: ModelDims
    engines: dict[str, tuple[str, EngineKey, Profile]]  # network -> (plan file name, key, profile)

    def plan_path(self, network: str) -> Path:
        return self.root / self.engines[network][0]

    def write(self) -> Path:
        """Write the index atomically, under its lock (another process may be indexing the same target)."""
        path = index_path(self.root, self.target)
        payload = {
            "format": INDEX_FORMAT,
            "target": asdict(self.target),
            "model_fingerprint": self.model_fingerprint,
            "model_info": self.model_info.model_facts(),
            "dims": self.dims.to_json(),
            "engines": {
                network: {"plan": plan, "key": asdict(key), "profile": profile.to_json()}
                for network, (plan, key, profile) in self.engines.items()
            },
        }
        with exclusive(path.with_suffix(".lock")):
            return write_json_atomic(path, payload)

    @classmethod
    def read(cls, root: str | Path, target: BuildTarget) -> EngineSet:
        root = Path(root)
        path = index_path(root, target)
        others = sorted(p.name for p in root.glob("engines-*.json"))
        built_for = f" (it has engines for: {', '.join(others)})" if others else ""
        missing = f"{root} holds no TensorRT engines for this GPU and TensorRT ({path.name}){built_for}: "
        missing += "run `scott build-engines`"
        data = read_versioned_json(path, INDEX_FORMAT, missing)
        engines = {}
        for network, entry in data["engines"].items():
            profile = Profile(
                tuple((name, tuple(s["min"]), tuple(s["opt"]), tuple(s["max"])) for name, s in entry["profile"].items())
            )
            engines[network] = (entry["plan"], EngineKey(**entry["key"]), profile)
        missing = [n for n in NETWORKS if n not in engines]
        if missing:
            raise ValueError(f"{path} lacks engines for {missing}")
        return cls(
            root,
            BuildTarget(**data["target"]),
            data["model_fingerprint"],
            ModelInfo(**data["model_info"]),
            ModelDims(**data["dims"]),
            engines,
        )


# -- building --------------------------------------------------------------------------------------


def strongly_typed(trt: Any) -> bool:
    """TensorRT 11 builds strongly typed networks only (it removed BuilderFlag.FP16 and the other weak-typing flags):
    an engine computes what its graph says, so fp16 engines come from fp16 graphs (export_onnx(precision=f16)).
    TensorRT 10 builds fp16 engines from the fp32 graphs with BuilderFlag.FP16, choosing precision per layer."""
    return not hasattr(trt.BuilderFlag, "FP16")


def precision_flags(trt: Any, precision: Precision) -> list[Any]:
    """The builder flags for an engine in `precision`: FP16 for weak typing; none when the graph decides."""
    return [trt.BuilderFlag.FP16] if precision == Precision.F16 and not strongly_typed(trt) else []


def _timing_cache(config: Any, data: bytes, path: Path) -> Any:
    cache = config.create_timing_cache(data)
    if cache is None:
        raise RuntimeError(f"TensorRT could not read the timing cache {path}: delete it to start a new one")
    return cache


def build_plan(onnx_path: Path, plan_path: Path, profile: Profile, precision: Precision, timing_cache: Path) -> None:
    """Parse an ONNX file and write a serialized TensorRT engine (the only function here that needs TensorRT)."""
    import tensorrt as trt

    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    # Explicit batch is the only mode since TensorRT 10. On 11.x every network is strongly typed (the flag is
    # accepted); 10.x builds weakly typed here, its FP16 flag choosing the precision per layer.
    flags = 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED.value) if strongly_typed(trt) else 0
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):  # from the file: external data is found beside it
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise RuntimeError(f"TensorRT could not parse {onnx_path}: {errors}")
    config = builder.create_builder_config()
    for flag in precision_flags(trt, precision):
        config.set_flag(flag)
    trt_profile = builder.create_optimization_profile()
    for name, lo, opt, hi in profile.shapes:
        trt_profile.set_shape(name, lo, opt, hi)
    config.add_optimization_profile(trt_profile)

    with exclusive(timing_cache.with_suffix(".lock")):
        cache_bytes = timing_cache.read_bytes() if timing_cache.is_file() else b""
    # The cache is this target's own (timing_cache_path), so a mismatch means a damaged file: say so, do not build
    # with a cache TensorRT rejected.
    if not config.set_timing_cache(_timing_cache(config, cache_bytes, timing_cache), ignore_mismatch=False):
        raise RuntimeError(f"TensorRT rejected the timing cache {timing_cache}: delete it to start a new one")
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise RuntimeError(f"TensorRT failed to build an engine from {onnx_path} (see the log above)")
    plan_path.write_bytes(bytes(serialized))
    # Merge what this build timed into the target's cache (another build may have updated it meanwhile).
    with exclusive(timing_cache.with_suffix(".lock")):
        merged = config.get_timing_cache()
        if merged is None:
            raise RuntimeError("TensorRT returned no timing cache after the build")
        if timing_cache.is_file():
            theirs = _timing_cache(config, timing_cache.read_bytes(), timing_cache)
            if not merged.combine(theirs, ignore_mismatch=False):
                raise RuntimeError(f"TensorRT could not merge the timing cache {timing_cache}")
        write_bytes_atomic(timing_cache, bytes(merged.serialize()))


def build_engine_set(
    export: OnnxExport,
    out_dir: str | Path,
    target: BuildTarget,
    max_batch_size: int = DEFAULT_MAX_BATCH_SIZE,
    sizes: Sequence[tuple[int, int]] | None = None,
    precision: Precision = Precision.F16,
    opt_batch_size: int | None = None,
    builder: PlanBuilder = build_plan,
    log: Callable[[str], None] | None = None,
    vae_precision: Precision | None = None,
    graphs: Mapping[Precision, OnnxExport] | None = None,
) -> EngineSet:
    """Build (or find in out_dir's cache) one engine per network of an export, and write the index."""
    say = log or (lambda _msg: None)
    cache = EngineCache(out_dir)
    cache.root.mkdir(parents=True, exist_ok=True)
    timing_cache = timing_cache_path(cache.root, target)
    planned = plan_engines(export, target, max_batch_size, sizes, precision, opt_batch_size, vae_precision, graphs)
    engines: dict[str, tuple[str, EngineKey, Profile]] = {}
    for network, plan in planned.items():
        own = plan.key.precision
        say(f"{network}: engine {cache.plan_path(plan.key).name} ({own}, profile {plan.profile.to_json()})")

        def build(tmp: Path, plan: PlannedEngine = plan) -> None:
            say(f"  building {plan.network} from {plan.onnx_path} ...")
            builder(plan.onnx_path, tmp, plan.profile, plan.key.precision, timing_cache)

        path = cache.get_or_build(plan.key, build)
        engines[network] = (path.name, plan.key, plan.profile)
    engine_set = EngineSet(cache.root, target, export.fingerprint, export.info(), export.dims, engines)
    engine_set.write()
    return engine_set


def build_engines(
    model_dir: str | Path,
    out_dir: str | Path,
    max_batch_size: int = DEFAULT_MAX_BATCH_SIZE,
    sizes: Sequence[tuple[int, int]] | None = None,
    precision: Precision = Precision.F16,
    onnx_dir: str | Path | None = None,
    device: str | None = None,
    log: Callable[[str], None] | None = None,
    vae_precision: Precision | None = None,
    decoder: DecoderChoice = FULL_DECODER,
) -> EngineSet:
    """`scott build-engines`: FP16 engines (the VAE's in vae_precision if given) for the model at model_dir, with
    the full VAE's decoder or a tiny one (scott.decoder).

    The ONNX export is found or made by engines.onnx_export.resolve_onnx_dir (onnx_dir, else
    <model_dir>/onnx, else the user cache). Needs TensorRT and a CUDA GPU; raises naming what is missing.
    """
    from engines.tensorrt_env import build_target, require_tensorrt

    trt, target_device = require_tensorrt(device)  # before the (slow) export: fail fast
    export = OnnxExport.read(resolve_onnx_dir(model_dir, onnx_dir, log=log, decoder=decoder))
    graphs = None
    if strongly_typed(trt):  # the fp16 graphs come from their own export, into the cache (onnx_dir holds fp32)
        graphs = {Precision.F32: export}
        if Precision.F16 in (precision, vae_precision or precision):
            fp16_dir = resolve_onnx_dir(model_dir, log=log, precision=Precision.F16, decoder=decoder)
            graphs[Precision.F16] = OnnxExport.read(fp16_dir)
    target = build_target(trt, target_device)
    return build_engine_set(
        export, out_dir, target, max_batch_size, sizes, precision, log=log, vae_precision=vae_precision, graphs=graphs
    )


def check_engine_set(
    engine_set: EngineSet, model_dir: str | Path, target: BuildTarget, decoder: DecoderChoice = FULL_DECODER
) -> dict[str, Path]:
    """The validated plan of each network for this host, or EngineCacheError saying what differs.

    The index's keys are re-targeted to this host: a plan built on another GPU or TensorRT version
    fails its sidecar check instead of failing inside TensorRT.
    """
    fingerprint = model_fingerprint(model_dir, decoder)
    if fingerprint != engine_set.model_fingerprint:
        raise ValueError(
            f"the engines in {engine_set.root} were built from other weights than {model_dir} "
            f"with the {decoder.kind} decoder: re-run scott build-engines"
        )
    cache = EngineCache(engine_set.root)
    plans = {}
    for network, (plan, key, _) in engine_set.engines.items():
        here = EngineKey(**{**asdict(key), **asdict(target)})
        plans[network] = cache.validate(here, plan=engine_set.root / plan)
    return plans


def index_summary(engine_set: EngineSet) -> dict[str, Any]:
    """A printable summary (network -> plan file and profile) for the CLI."""
    return {n: {"plan": p, "profile": prof.to_json()} for n, (p, _, prof) in engine_set.engines.items()}
