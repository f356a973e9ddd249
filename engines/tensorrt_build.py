"""Build FP16 TensorRT engines from a model's ONNX export into an engine cache, and index them.

`build_engines` plans one engine per network (profile from ModelInfo, max batch and sizes; key
from the ONNX hash, the build target and the profile), builds what the cache lacks under the
key's lock, and writes `engines.json`, the index the runtime reads. Only `build_plan` calls
TensorRT; everything else runs (and is tested) without it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from engines.engine_cache import BuildTarget, EngineCache, EngineKey, exclusive, onnx_sha256, read_versioned_json
from engines.onnx_export import OnnxExport, model_fingerprint, resolve_onnx_dir
from engines.shapes import NETWORKS, ModelDims, Profile, build_profiles
from scott.atomic import write_bytes_atomic, write_json_atomic
from scott.pipeline import ModelInfo

INDEX = "engines.json"
INDEX_FORMAT = 1
TIMING_CACHE = "timing.cache"
PRECISIONS = ("fp16", "fp32")
DEFAULT_MAX_BATCH_SIZE = 8

# (onnx path, plan path to write, profile, precision, timing cache path) -> None
PlanBuilder = Callable[[Path, Path, Profile, str, Path], None]


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
    precision: str = "fp16",
    opt_batch_size: int | None = None,
) -> dict[str, PlannedEngine]:
    """The engine each network needs on this target: its profile and cache key (no building)."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    profiles = build_profiles(export.info(), export.dims.text_dim, max_batch_size, sizes, opt_batch_size)
    planned = {}
    for network in NETWORKS:
        onnx_path = export.path(network)
        key = EngineKey.create(network, onnx_sha256(onnx_path), target, precision, profiles[network].to_json())
        planned[network] = PlannedEngine(network, onnx_path, profiles[network], key)
    return planned


# -- the index the runtime reads -------------------------------------------------------------------


@dataclass(frozen=True)
class EngineSet:
    """Built engines of one model for one target: where the plans are and what they accept."""

    root: Path
    model_fingerprint: str
    model_info: ModelInfo
    dims: ModelDims
    engines: dict[str, tuple[str, EngineKey, Profile]]  # network -> (plan file name, key, profile)

    def plan_path(self, network: str) -> Path:
        return self.root / self.engines[network][0]

    def write(self) -> Path:
        payload = {
            "format": INDEX_FORMAT,
            "model_fingerprint": self.model_fingerprint,
            "model_info": asdict(self.model_info),
            "dims": self.dims.to_json(),
            "engines": {
                network: {"plan": plan, "key": asdict(key), "profile": profile.to_json()}
                for network, (plan, key, profile) in self.engines.items()
            },
        }
        return write_json_atomic(self.root / INDEX, payload)

    @classmethod
    def read(cls, root: str | Path) -> EngineSet:
        root = Path(root)
        path = root / INDEX
        missing = f"{root} holds no TensorRT engines ({INDEX} missing): run `scott build-engines`"
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
        return cls(root, data["model_fingerprint"], ModelInfo(**data["model_info"]), ModelDims(**data["dims"]), engines)


# -- building --------------------------------------------------------------------------------------


def build_plan(onnx_path: Path, plan_path: Path, profile: Profile, precision: str, timing_cache: Path) -> None:
    """Parse an ONNX file and write a serialized TensorRT engine (the only function here that needs TensorRT)."""
    import tensorrt as trt

    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network = builder.create_network(0)  # TensorRT 10: explicit batch is the only mode
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):  # from the file: external data is found beside it
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise RuntimeError(f"TensorRT could not parse {onnx_path}: {errors}")
    config = builder.create_builder_config()
    if precision == "fp16":
        config.set_flag(trt.BuilderFlag.FP16)
    trt_profile = builder.create_optimization_profile()
    for name, lo, opt, hi in profile.shapes:
        trt_profile.set_shape(name, lo, opt, hi)
    config.add_optimization_profile(trt_profile)

    with exclusive(timing_cache.with_suffix(".lock")):
        cache_bytes = timing_cache.read_bytes() if timing_cache.is_file() else b""
    config.set_timing_cache(config.create_timing_cache(cache_bytes), ignore_mismatch=False)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise RuntimeError(f"TensorRT failed to build an engine from {onnx_path} (see the log above)")
    plan_path.write_bytes(bytes(serialized))
    # Merge what this build timed into the shared cache (another build may have updated it meanwhile).
    with exclusive(timing_cache.with_suffix(".lock")):
        merged = config.get_timing_cache()
        if timing_cache.is_file():
            merged.combine(config.create_timing_cache(timing_cache.read_bytes()), ignore_mismatch=True)
        write_bytes_atomic(timing_cache, bytes(merged.serialize()))


def build_engine_set(
    export: OnnxExport,
    out_dir: str | Path,
    target: BuildTarget,
    max_batch_size: int = DEFAULT_MAX_BATCH_SIZE,
    sizes: Sequence[tuple[int, int]] | None = None,
    precision: str = "fp16",
    opt_batch_size: int | None = None,
    builder: PlanBuilder = build_plan,
    log: Callable[[str], None] | None = None,
) -> EngineSet:
    """Build (or find in out_dir's cache) one engine per network of an export, and write the index."""
    say = log or (lambda _msg: None)
    cache = EngineCache(out_dir)
    cache.root.mkdir(parents=True, exist_ok=True)
    timing_cache = cache.root / TIMING_CACHE
    planned = plan_engines(export, target, max_batch_size, sizes, precision, opt_batch_size)
    engines: dict[str, tuple[str, EngineKey, Profile]] = {}
    for network, plan in planned.items():
        say(f"{network}: engine {cache.plan_path(plan.key).name} ({precision}, profile {plan.profile.to_json()})")

        def build(tmp: Path, plan: PlannedEngine = plan) -> None:
            say(f"  building {plan.network} from {plan.onnx_path} ...")
            builder(plan.onnx_path, tmp, plan.profile, precision, timing_cache)

        path = cache.get_or_build(plan.key, build)
        engines[network] = (path.name, plan.key, plan.profile)
    engine_set = EngineSet(cache.root, export.fingerprint, export.info(), export.dims, engines)
    engine_set.write()
    return engine_set


def build_engines(
    model_dir: str | Path,
    out_dir: str | Path,
    max_batch_size: int = DEFAULT_MAX_BATCH_SIZE,
    sizes: Sequence[tuple[int, int]] | None = None,
    precision: str = "fp16",
    onnx_dir: str | Path | None = None,
    device: str | None = None,
    log: Callable[[str], None] | None = None,
) -> EngineSet:
    """`scott build-engines`: FP16 engines for the model at model_dir, into out_dir.

    The ONNX export is found or made by engines.onnx_export.resolve_onnx_dir (onnx_dir, else
    <model_dir>/onnx, else the user cache). Needs TensorRT and a CUDA GPU; raises naming what is missing.
    """
    from engines.tensorrt_env import build_target, require_tensorrt

    trt, target_device = require_tensorrt(device)  # before the (slow) export: fail fast
    export = OnnxExport.read(resolve_onnx_dir(model_dir, onnx_dir, log=log))
    return build_engine_set(
        export, out_dir, build_target(trt, target_device), max_batch_size, sizes, precision, log=log
    )


def check_engine_set(engine_set: EngineSet, model_dir: str | Path, target: BuildTarget) -> dict[str, Path]:
    """The validated plan of each network for this host, or EngineCacheError saying what differs.

    The index's keys are re-targeted to this host: a plan built on another GPU or TensorRT version
    fails its sidecar check instead of failing inside TensorRT.
    """
    fingerprint = model_fingerprint(model_dir)
    if fingerprint != engine_set.model_fingerprint:
        raise ValueError(
            f"the engines in {engine_set.root} were built from other weights than {model_dir}: "
            "re-run scott build-engines"
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
