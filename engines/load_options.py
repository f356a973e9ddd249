"""How to load a model: the one frozen options object that settings produce and every loader reads.

Every combination rule lives here, checked once when the object is made, so a wrong flag fails before any export,
compile or engine build. Importing this module is cheap (no torch): the CLI and settings use it at start.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from scott.precision import Precision

BACKENDS = ("torch", "onnx", "openvino", "tensorrt")
DEFAULT_MAX_BATCH_SIZE = 8  # images per UNet batch: the server's default, and the TensorRT profiles' top
# The precision a backend's graphs or engines are built in; --precision may name it or say auto.
FIXED_PRECISION = {"onnx": Precision.F32, "tensorrt": Precision.F16}
VAE_PRECISIONS = (Precision.F32, Precision.F16)  # tensorrt's VAE decoder engine (f32 guards against f16 overflow)


@dataclass(frozen=True)
class LoadOptions:
    """backend: torch | onnx | openvino | tensorrt; None: the device's default (engines.loader.default_backend).
    device: e.g. cpu, cuda, cuda:1; None: CUDA when present.
    precision: auto or f32 | bf16 | f16 where the runtime has it (onnx runs f32, tensorrt f16).
    max_batch_size: the largest batch the caller will run; TensorRT builds its engines' profiles up to it.
    threads: CPU threads for inference (None: one per physical core); CUDA backends ignore it.
    vae_precision: f32 | f16 for TensorRT's VAE decoder engine; tensorrt only.
    compile: torch.compile the networks (inductor, cached on disk); torch only.
    decoder: full (the VAE's) | tiny (the folder's vae_tiny/) | the path of an AutoencoderTiny folder.
    """

    backend: str | None = None
    device: str | None = None
    precision: Precision = Precision.AUTO
    max_batch_size: int = DEFAULT_MAX_BATCH_SIZE
    threads: int | None = None
    vae_precision: Precision | None = None
    compile: bool = False
    decoder: str = "full"

    def __post_init__(self) -> None:
        # Accept names as well as members; frozen, so set through object.__setattr__.
        object.__setattr__(self, "precision", Precision.parse(self.precision))
        if self.vae_precision is not None:
            object.__setattr__(self, "vae_precision", Precision.parse(self.vae_precision))
        if self.backend is not None and self.backend not in BACKENDS:
            raise ValueError(f"unknown backend {self.backend!r}; available: {', '.join(BACKENDS)}")
        if self.vae_precision is not None and self.vae_precision not in VAE_PRECISIONS:
            raise ValueError(f"vae_precision must be f32 or f16, got {self.vae_precision.value!r}")
        if self.backend is not None:  # the rest depends on the backend: checked again once the default is picked
            self._check_for_backend(self.backend)

    def with_backend(self, backend: str) -> LoadOptions:
        """These options on a named backend (the loader names the device's default), checked for it."""
        return replace(self, backend=backend)

    def _check_for_backend(self, backend: str) -> None:
        if self.vae_precision is not None and backend != "tensorrt":
            raise ValueError(f"vae_precision applies to the tensorrt backend, not {backend}")
        if self.compile and backend != "torch":
            raise ValueError(f"compile applies to the torch backend, not {backend}")
        fixed = FIXED_PRECISION.get(backend)
        if fixed is not None and self.precision not in (Precision.AUTO, fixed):
            raise ValueError(
                f"the {backend} backend runs its export's own precision ({fixed.value}); use --precision auto"
            )
