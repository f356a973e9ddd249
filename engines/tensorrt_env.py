"""Whether this host can run TensorRT engines, and the build target (TensorRT version, GPU) a plan is tied to."""

from __future__ import annotations

import importlib
import importlib.util
from types import ModuleType

import torch

from engines.engine_cache import BuildTarget

MIN_TENSORRT_MAJOR = 10  # execute_async_v3, set_input_shape and named I/O tensors
REQUIREMENT = "tensorrt backend needs the `tensorrt` Python package (pip install scott-serve[tensorrt]) and a CUDA GPU"


def missing_requirements(device: torch.device | None = None) -> list[str]:
    """What stands between this host and running TensorRT engines (empty if nothing does)."""
    problems = []
    if importlib.util.find_spec("tensorrt") is None:
        problems.append("no `tensorrt` module is installed")
    else:
        try:
            trt = importlib.import_module("tensorrt")
            major = int(str(trt.__version__).split(".")[0])
            if major < MIN_TENSORRT_MAJOR:
                problems.append(f"tensorrt {trt.__version__} is older than {MIN_TENSORRT_MAJOR}.0")
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
