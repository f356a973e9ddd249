"""The one precision vocabulary: what a network computes in, as every flag, setting, export and backend names it."""

from __future__ import annotations

import warnings
from enum import StrEnum
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

# The spellings `scott export` and the TensorRT code used before this vocabulary; still read (ONNX manifests and
# engine sidecars written by older versions carry them), with a warning where a person typed them.
DEPRECATED_ALIASES = {"fp32": "f32", "fp16": "f16", "bfloat16": "bf16"}


class Precision(StrEnum):
    """auto: the runtime's fast accurate choice on its device (bf16 on CPUs that compute it natively, f16 on CUDA)."""

    AUTO = "auto"
    F32 = "f32"
    BF16 = "bf16"
    F16 = "f16"

    @classmethod
    def parse(cls, value: str | Precision, *, warn: bool = True) -> Precision:
        """A Precision from its name; an old alias (fp32, fp16) maps to the new name with a FutureWarning."""
        if isinstance(value, Precision):
            return value
        text = str(value).strip().lower()
        if text in DEPRECATED_ALIASES:
            if warn:
                warnings.warn(
                    f"precision {value!r} is deprecated; write {DEPRECATED_ALIASES[text]!r}",
                    FutureWarning,  # shown to the person who typed it (DeprecationWarning is hidden)
                    stacklevel=2,
                )
            text = DEPRECATED_ALIASES[text]
        try:
            return cls(text)
        except ValueError:
            raise ValueError(f"unknown precision {value!r}; available: {', '.join(p.value for p in cls)}") from None

    @classmethod
    def of_dtype(cls, dtype: torch.dtype) -> Precision:
        import torch

        return {torch.float32: cls.F32, torch.bfloat16: cls.BF16, torch.float16: cls.F16}[dtype]

    @property
    def dtype(self) -> torch.dtype:
        """The torch dtype of a concrete precision (auto has none: resolve it on the device first)."""
        import torch

        if self is Precision.AUTO:
            raise ValueError("precision auto has no dtype until a runtime resolves it on its device")
        return {Precision.F32: torch.float32, Precision.BF16: torch.bfloat16, Precision.F16: torch.float16}[self]
