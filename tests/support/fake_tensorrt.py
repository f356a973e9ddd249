"""A stand-in `tensorrt` module with the builder surface of TensorRT 10.x or 11.x (not installable here).

It mirrors what engines/tensorrt_build.py touches, with the same names and return conventions as the real bindings:
`IBuilderConfig.set_timing_cache` and `ITimingCache.combine` return bools, `create_timing_cache` returns None for
bytes it cannot read, `build_serialized_network` returns None on failure, and TensorRT 11's `BuilderFlag` has no
weak-typing members (FP16, BF16, INT8, ...), as its migration guide lists.
"""

from __future__ import annotations

import enum
import json
from types import ModuleType
from typing import Any

_WEAK_TYPING = ("FP16", "BF16", "INT8", "FP8", "INT4", "OBEY_PRECISION_CONSTRAINTS", "PREFER_PRECISION_CONSTRAINTS")
_ALWAYS = ("REFIT", "SPARSE_WEIGHTS", "STRIP_PLAN", "VERSION_COMPATIBLE")


class TimingCache:
    """Timings of one target; serialized as JSON so a test can read what a build added."""

    def __init__(self, target: str, entries: list[str]) -> None:
        self.target, self.entries = target, list(entries)

    def serialize(self) -> bytes:
        return json.dumps({"target": self.target, "entries": self.entries}).encode()

    def combine(self, other: TimingCache, ignore_mismatch: bool) -> bool:
        if other.target != self.target and not ignore_mismatch:
            return False
        self.entries += [e for e in other.entries if e not in self.entries]
        return True


def fake_tensorrt(version: str, target: str = "H100") -> ModuleType:
    """A `tensorrt` module of this version whose builds run on a GPU called `target`."""
    major = int(version.split(".")[0])
    trt = ModuleType("tensorrt")
    trt.__version__ = version
    members = [*_ALWAYS, *(_WEAK_TYPING if major < 11 else ())]
    trt.BuilderFlag = enum.Enum("BuilderFlag", members)  # type: ignore[attr-defined]
    trt.NetworkDefinitionCreationFlag = enum.Enum("NetworkDefinitionCreationFlag", ["STRONGLY_TYPED"])  # type: ignore[attr-defined]
    trt.built = []  # type: ignore[attr-defined]  # (onnx path, builder flags, profile shapes) per build, for the tests
    trt.network_flags = []  # type: ignore[attr-defined]  # the network creation flags of each build

    class Logger:
        WARNING = 2

        def __init__(self, severity: int) -> None:
            self.severity = severity

    class Network:
        def __init__(self, flags: int) -> None:
            self.flags, self.source = flags, None

    class OnnxParser:
        def __init__(self, network: Network, logger: Logger) -> None:
            self.network, self.num_errors = network, 0

        def parse_from_file(self, path: str) -> bool:
            self.network.source = path
            return True

        def get_error(self, index: int) -> str:
            raise IndexError(index)

    class OptimizationProfile:
        def __init__(self) -> None:
            self.shapes: dict[str, tuple[Any, Any, Any]] = {}

        def set_shape(self, name: str, lo: Any, opt: Any, hi: Any) -> None:
            self.shapes[name] = (tuple(lo), tuple(opt), tuple(hi))

    class BuilderConfig:
        def __init__(self) -> None:
            self.flags: set[Any] = set()
            self.profiles: list[OptimizationProfile] = []
            self.timing_cache: TimingCache | None = None

        def set_flag(self, flag: Any) -> None:
            self.flags.add(flag)

        def add_optimization_profile(self, profile: OptimizationProfile) -> int:
            self.profiles.append(profile)
            return len(self.profiles) - 1

        def create_timing_cache(self, data: bytes) -> TimingCache | None:
            if not data:
                return TimingCache(target, [])
            try:
                payload = json.loads(data)
                return TimingCache(payload["target"], payload["entries"])
            except (ValueError, KeyError, TypeError):
                return None

        def set_timing_cache(self, cache: TimingCache, ignore_mismatch: bool) -> bool:
            if cache.target != target and not ignore_mismatch:
                return False
            self.timing_cache = cache
            return True

        def get_timing_cache(self) -> TimingCache | None:
            return self.timing_cache

    class Builder:
        def __init__(self, logger: Logger) -> None:
            self.logger = logger

        def create_network(self, flags: int = 0) -> Network:
            return Network(flags)

        def create_builder_config(self) -> BuilderConfig:
            return BuilderConfig()

        def create_optimization_profile(self) -> OptimizationProfile:
            return OptimizationProfile()

        def build_serialized_network(self, network: Network, config: BuilderConfig) -> bytes | None:
            (profile,) = config.profiles
            trt.built.append((network.source, {f.name for f in config.flags}, profile.shapes))
            trt.network_flags.append(network.flags)
            if config.timing_cache is not None:
                config.timing_cache.entries.append(str(network.source))
            return f"plan of {network.source}".encode()

    trt.Logger, trt.OnnxParser, trt.Builder = Logger, OnnxParser, Builder  # type: ignore[attr-defined]
    return trt


# -- the runtime side: an engine whose output depends on the shape its context is bound to -------------------


class FakeContext:
    """An IExecutionContext over CPU memory: execute_async_v3 reads the bound input from its address and writes
    images whose value encodes the shape this context is bound to now (so a stale binding shows in the result)."""

    def __init__(self, engine: FakeEngine) -> None:
        self.engine = engine
        self.shapes: dict[str, tuple[int, ...]] = {}
        self.addresses: dict[str, int] = {}
        self.device_memory: tuple[int, int] | None = None

    def set_device_memory(self, memory: int, size: int) -> None:
        self.device_memory = (memory, size)

    def set_input_shape(self, name: str, shape: tuple[int, ...]) -> bool:
        self.shapes[name] = tuple(shape)
        return True

    def get_tensor_shape(self, name: str) -> tuple[int, ...]:
        batch, _, height, width = self.shapes["latents"]
        f = self.engine.scale
        return (batch, 3, height * f, width * f)

    def set_tensor_address(self, name: str, address: int) -> bool:
        self.addresses[name] = address
        return True

    def execute_async_v3(self, stream: int) -> bool:
        import ctypes

        import numpy as np

        if self.device_memory is None:
            return False  # USER_MANAGED contexts have no memory until given some
        latents = self.shapes["latents"]
        out = self.get_tensor_shape("images")
        read = np.ctypeslib.as_array((ctypes.c_float * int(np.prod(latents))).from_address(self.addresses["latents"]))
        write = np.ctypeslib.as_array((ctypes.c_float * int(np.prod(out))).from_address(self.addresses["images"]))
        write[:] = float(read.sum()) + 1000.0 * latents[0] + latents[2]  # input, bound batch and bound height
        self.engine.executions += 1
        return True


class FakeEngine:
    """An ICudaEngine of the VAE decoder's I/O (latents -> images)."""

    def __init__(self, scale: int = 2, memory: int = 4096) -> None:
        self.scale, self.device_memory_size_v2 = scale, memory
        self.names = ["latents", "images"]
        self.num_io_tensors = len(self.names)
        self.contexts: list[FakeContext] = []
        self.executions = 0

    def get_tensor_name(self, index: int) -> str:
        return self.names[index]

    def create_execution_context(self, strategy: Any) -> FakeContext:
        assert strategy.name == "USER_MANAGED"
        self.contexts.append(FakeContext(self))
        return self.contexts[-1]


def fake_runtime(version: str, engine: FakeEngine) -> tuple[ModuleType, Any]:
    """(tensorrt module, trt.Runtime) whose deserialize_cuda_engine returns `engine`."""
    trt = fake_tensorrt(version)
    trt.ExecutionContextAllocationStrategy = enum.Enum(  # type: ignore[attr-defined]
        "ExecutionContextAllocationStrategy", ["STATIC", "ON_PROFILE_CHANGE", "USER_MANAGED"]
    )

    class Runtime:
        def deserialize_cuda_engine(self, plan: bytes) -> FakeEngine:
            return engine

    return trt, Runtime()


class ReplayGraph:
    """Stands in for a CUDA graph: replay() re-issues the captured work, which reads the context as it is then."""

    def __init__(self, work: Any, stream: Any) -> None:
        self.work, self.replays = work, 0

    def replay(self) -> None:
        self.replays += 1
        self.work()
