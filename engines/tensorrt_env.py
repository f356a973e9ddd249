"""Whether this host can run TensorRT engines, and the build target (TensorRT version, GPU) a plan is tied to."""

from __future__ import annotations

import importlib
import importlib.util
from types import ModuleType

import torch

from engines.engine_cache import BuildTarget

# 10: execute_async_v3, set_input_shape and named I/O tensors; 10.1: ICudaEngine.device_memory_size_v2 and
# IExecutionContext.set_device_memory (one scratch buffer, many contexts). 11: strongly typed networks only, built
# from fp16 graphs (engines.tensorrt_build.strongly_typed).
SUPPORTED_MAJORS = (10, 11)
MIN_VERSION = (10, 1)
REQUIREMENT = "tensorrt backend needs the `tensorrt` Python package (pip install scott-serve[tensorrt]) and a CUDA GPU"


def unsupported_version(version: str) -> str | None:
    """Why this TensorRT version cannot serve here, or None if it can."""
    major, minor = (int(part) for part in version.split(".")[:2])
    if major in SUPPORTED_MAJORS and (major, minor) >= MIN_VERSION:
        return None
    if major > max(SUPPORTED_MAJORS):
        return f"tensorrt {version} is newer than this version of scott supports (10.1 to 11.x)"
    return f"tensorrt {version} is older than {'.'.join(map(str, MIN_VERSION))}"


def missing_requirements(device: torch.device | None = None) -> list[str]:
    """What stands between this host and running TensorRT engines (empty if nothing does)."""
    problems = []
    if importlib.util.find_spec("tensorrt") is None:
        problems.append("no `tensorrt` module is installed")
    else:
        try:
            trt = importlib.import_module("tensorrt")
            problem = unsupported_version(str(trt.__version__))
            if problem:
                problems.append(problem)
        except Exception as err:  # a broken install (missing libnvinfer) raises all kinds of errors
            problems.append(f"`import tensorrt` fails: {err}")
    if device is not None and device.type != "cuda":
        problems.append(f"device {str(device)!r} is not a CUDA device")
    if torch.version.cuda is None:
        problems.append(f"torch {torch.__version__} is a CPU-only build")
    elif not torch.cuda.is_available():
        problems.append(f"torch {torch.__version__} (CUDA {torch.version.cuda}) sees no CUDA device")
    return problems


def require_tensorrt(device: str | torch.device | None = None) -> tuple[ModuleType, torch.device]:
    """The tensorrt module and the CUDA device to run on, or a RuntimeError naming everything that is missing."""
    target = torch.device(device) if device is not None else torch.device("cuda")
    if target.type == "cuda" and target.index is None:
        target = torch.device("cuda", 0)
    problems = missing_requirements(target)
    if problems:
        raise RuntimeError(f"{REQUIREMENT}; found: {'; '.join(problems)}")
    return importlib.import_module("tensorrt"), target


def build_target(trt: ModuleType, device: torch.device) -> BuildTarget:
    """The TensorRT version and GPU model a plan built (or loaded) on this device is tied to."""
    props = torch.cuda.get_device_properties(device)
    return BuildTarget(
        tensorrt_version=str(trt.__version__),
        gpu_name=str(props.name),
        compute_capability=f"{props.major}.{props.minor}",
    )
