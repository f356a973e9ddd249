"""A cache of built TensorRT engines keyed by everything that makes a plan valid, with a JSON sidecar.

A plan is only valid for the ONNX graph it was built from, the TensorRT version that built it,
the GPU model (name and compute capability), the precision and the optimization profile. All of
these form an EngineKey; its digest names the files (`<network>-<digest16>.plan` and `.json`).
The sidecar repeats the key and the plan's own hash, and is checked on every load, so a plan
copied from another host, a truncated write or a hand-edited file is caught before TensorRT
deserializes it. Builds hold a file lock per key: two processes never build the same engine at
once, and the second one waits and then loads what the first built.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import re
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import filelock

from scott.atomic import atomic_path, write_json_atomic

SIDECAR_FORMAT = 1
DEFAULT_LOCK_TIMEOUT_S = 3600.0  # an SD-scale UNet build takes minutes; a stuck lock holder is a bug


class EngineCacheError(RuntimeError):
    """A cached engine cannot be used as it is (mismatched, corrupt or missing)."""


@dataclass(frozen=True)
class BuildTarget:
    """What a plan is tied to besides its graph: the TensorRT version and the GPU model."""

    tensorrt_version: str
    gpu_name: str
    compute_capability: str  # "9.0"

    def slug(self) -> str:
        """A file-name-safe name of the target, e.g. nvidia-h100-80gb-hbm3-sm90-trt10.16.1.11."""
        gpu = re.sub(r"[^a-z0-9]+", "-", self.gpu_name.lower()).strip("-")
        return f"{gpu}-sm{self.compute_capability.replace('.', '')}-trt{self.tensorrt_version}"


@dataclass(frozen=True)
class EngineKey:
    """Everything that makes a built engine reusable. Equal keys => interchangeable plans."""

    network: str
    onnx_sha256: str
    tensorrt_version: str
    gpu_name: str
    compute_capability: str
    precision: str  # scott.precision.Precision's name: f16 | f32
    profile: str  # canonical JSON of shapes.Profile.to_json()

    @classmethod
    def create(
        cls, network: str, onnx_sha256: str, target: BuildTarget, precision: str, profile: dict[str, Any]
    ) -> EngineKey:
        return cls(
            network=network,
            onnx_sha256=onnx_sha256,
            tensorrt_version=target.tensorrt_version,
            gpu_name=target.gpu_name,
            compute_capability=target.compute_capability,
            precision=precision,
            profile=json.dumps(profile, sort_keys=True, separators=(",", ":")),
        )

    def digest(self) -> str:
        payload = json.dumps(asdict(self), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(payload.encode()).hexdigest()

    def mismatches(self, built: EngineKey) -> list[str]:
        """'field: wanted ..., built ...' for each field where a built engine's key differs from this one."""
        return [
            f"{f.name}: wanted {getattr(self, f.name)!r}, built {getattr(built, f.name)!r}"
            for f in fields(self)
            if getattr(self, f.name) != getattr(built, f.name)
        ]


def file_sha256(path: Path) -> str:
    with path.open("rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


def onnx_sha256(onnx_path: Path) -> str:
    """Hash of an ONNX model's content: the graph file plus every external-data file it names."""
    import onnx  # deferred: the cache itself does not need onnx

    digest = hashlib.sha256()
    digest.update(bytes.fromhex(file_sha256(onnx_path)))
    proto = onnx.load(str(onnx_path), load_external_data=False)
    locations = set()
    for tensor in _graph_tensors(proto.graph):
        if tensor.data_location == onnx.TensorProto.EXTERNAL:
            locations.update(entry.value for entry in tensor.external_data if entry.key == "location")
    for location in sorted(locations):
        digest.update(location.encode())
        digest.update(bytes.fromhex(file_sha256(onnx_path.parent / location)))
    return digest.hexdigest()


def _graph_tensors(graph: Any) -> Iterator[Any]:
    """Initializers and constant-attribute tensors of a graph and its subgraphs (where external data can live)."""
    yield from graph.initializer
    for node in graph.node:
        for attribute in node.attribute:
            if attribute.HasField("t"):
                yield attribute.t
            yield from attribute.tensors
            if attribute.HasField("g"):
                yield from _graph_tensors(attribute.g)
            for subgraph in attribute.graphs:
                yield from _graph_tensors(subgraph)


def read_versioned_json(path: Path, format_version: int, missing: str) -> dict[str, Any]:
    """A JSON object this package wrote with {"format": format_version}; `missing` says what to run when absent.

    FileNotFoundError when there is no file, ValueError (naming the file) when it is not such an object.
    """
    if not path.is_file():
        raise FileNotFoundError(missing)
    try:
        data = json.loads(path.read_text())
    except ValueError as err:
        raise ValueError(f"{path} is not valid JSON ({err})") from err
    found = data.get("format") if isinstance(data, dict) else None
    if found != format_version:
        raise ValueError(f"{path} has format {found}, this version reads {format_version}")
    return data


@contextlib.contextmanager
def exclusive(lock_path: Path, timeout_s: float = DEFAULT_LOCK_TIMEOUT_S) -> Iterator[None]:
    """An inter-process (and inter-thread) lock on a file; raises filelock.Timeout after timeout_s."""
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    # thread_local=False + a fresh object per call: threads contend through the OS lock like processes do.
    with filelock.FileLock(str(lock_path), timeout=timeout_s, thread_local=False, is_singleton=False):
        yield


class EngineCache:
    """Plans under one folder, found by key; built at most once per key at a time."""

    def __init__(self, root: str | Path, lock_timeout_s: float = DEFAULT_LOCK_TIMEOUT_S) -> None:
        self.root = Path(root)
        self.lock_timeout_s = lock_timeout_s

    def plan_path(self, key: EngineKey) -> Path:
        return self.root / f"{key.network}-{key.digest()[:16]}.plan"

    def sidecar_path(self, key: EngineKey) -> Path:
        return self.plan_path(key).with_suffix(".json")

    def lock_path(self, key: EngineKey) -> Path:
        return self.plan_path(key).with_suffix(".lock")

    # -- load --------------------------------------------------------------------------------------

    def validate(self, key: EngineKey, plan: Path | None = None, check_hash: bool = True) -> Path:
        """The plan for key, after checking its sidecar against key and the plan's bytes; raises if unusable.

        plan: a plan file to check instead of the one key names (an index's entry, built elsewhere maybe).
        """
        plan = plan or self.plan_path(key)
        sidecar = plan.with_suffix(".json")
        if not plan.is_file():
            raise EngineCacheError(f"no engine for {key.network} in {self.root} (expected {plan.name})")
        if not sidecar.is_file():
            raise EngineCacheError(f"{plan} has no sidecar {sidecar.name}: rebuild it (scott build-engines)")
        try:
            meta = json.loads(sidecar.read_text())
            stored = EngineKey(**meta["key"])
        except (ValueError, KeyError, TypeError) as err:
            raise EngineCacheError(f"sidecar {sidecar} is unreadable ({err}): rebuild the engine") from err
        if meta.get("format") != SIDECAR_FORMAT:
            raise EngineCacheError(f"sidecar {sidecar} has format {meta.get('format')}, expected {SIDECAR_FORMAT}")
        problems = key.mismatches(stored)
        if problems:
            raise EngineCacheError(
                f"engine {plan} was built for another setup ({'; '.join(problems)}): rebuild it (scott build-engines)"
            )
        size = plan.stat().st_size
        if size != meta.get("plan_bytes"):
            raise EngineCacheError(f"engine {plan} is {size} bytes, its sidecar says {meta.get('plan_bytes')}")
        if check_hash and file_sha256(plan) != meta.get("plan_sha256"):
            raise EngineCacheError(f"engine {plan} does not match the hash in its sidecar (corrupt or replaced)")
        return plan

    def lookup(self, key: EngineKey) -> Path | None:
        """The plan for key if a valid one is cached, else None."""
        try:
            return self.validate(key)
        except EngineCacheError:
            return None

    # -- build -------------------------------------------------------------------------------------

    def get_or_build(self, key: EngineKey, build: Callable[[Path], None]) -> Path:
        """The cached plan for key, building it with build(tmp_path) under the key's lock if needed.

        build writes a serialized engine to the path it is given. A failed build leaves nothing behind.
        """
        found = self.lookup(key)
        if found is not None:
            return found
        with exclusive(self.lock_path(key), self.lock_timeout_s):
            found = self.lookup(key)  # built by whoever held the lock before us
            if found is not None:
                return found
            plan, sidecar = self.plan_path(key), self.sidecar_path(key)
            sidecar.unlink(missing_ok=True)  # a stale or mismatched entry: replace it
            started = time.time()
            with atomic_path(plan) as tmp:
                build(tmp)
                if not tmp.is_file() or tmp.stat().st_size == 0:
                    raise EngineCacheError(f"building {key.network} produced no engine")
            # The sidecar goes last: a plan without one is never loaded.
            write_json_atomic(
                sidecar,
                {
                    "format": SIDECAR_FORMAT,
                    "key": asdict(key),
                    "digest": key.digest(),
                    "plan_bytes": plan.stat().st_size,
                    "plan_sha256": file_sha256(plan),
                    "build_seconds": round(time.time() - started, 3),
                    "built_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                },
                sort_keys=True,
            )
            return plan
