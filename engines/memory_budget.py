"""What serving a model on the CPU will hold in memory, estimated from its folder before any export or compile, and
checked against what this process may use (engines.memory_limit) so a configuration that cannot fit is refused at
start with the numbers, never left to the kernel's OOM killer.

The estimate, in bytes (an OpenVINO compiled model per shape, measured on 2 cores, 2026-12-07):
    runtime     the libraries and the server, whatever the model                     (measured 0.6-0.7 GB)
    source      the f32 ONNX graphs OpenVINO reads and compiles from: 4 B per parameter
    weights     each compiled model's own weights: 2 B per parameter in bf16 / f16, 4 in f32
    activations per image at the size: ACTIVATION_FACTOR x the VAE decoder's largest tensor in f32
A static compiled model per batch size (fastest) holds weights once per size and activations for its batch;
one model with a dynamic batch dimension holds weights once and activations for the largest batch. Measured RSS
against this estimate, bf16 (2-core AMD EPYC, 2026-12-07): SD-1.5 at 512x512 static 8.04 GB at batch 1 and 11.71
with batches 1 and 2 (estimate 8.28 / 12.02), dynamic 8.14 / 8.86 GB at batch 1 / 2 (8.28 / 9.08); the shipped
64x64 model static with batches 1-8, 1.44 GB (1.43; the text encoder, compiled once, is counted per batch size).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

from safetensors import safe_open

from engines.memory_limit import MemoryLimit, memory_limit
from engines.shapes import vae_peak_channels
from scott.decoder import DecoderChoice
from scott.models import load_serving_card, require_model_folder
from scott.precision import Precision

GiB = 2**30
RUNTIME_BYTES = GiB  # torch, OpenVINO, ONNX Runtime, diffusers, the server: 0.6-0.7 GB measured, rounded up
# Per image, in multiples of the VAE decoder's largest f32 activation: SD-1.5 at 512x512 measured 0.68 GB for a
# 268 MB largest tensor (2.5x); 3 leaves room for the UNet's and text encoder's share at other sizes.
ACTIVATION_FACTOR = 3
HEADROOM = 0.9  # of the limit: request buffers, PNG encoding and the allocator's slack need the rest


class MemoryBudgetError(RuntimeError):
    """A configuration that cannot fit in the memory this process may use (the message says what to change)."""


def parameter_count(folder: Path) -> int:
    """Parameters in a diffusers module folder's safetensors files, read from their headers (no weights loaded)."""
    total = 0
    for file in sorted(folder.glob("*.safetensors")):
        with safe_open(str(file), "pt") as tensors:
            total += sum(math.prod(tensors.get_slice(name).get_shape()) for name in tensors.keys())  # noqa: SIM118
    return total


def _decoder_peak_channels(model_dir: Path, decoder: DecoderChoice) -> int:
    """Channels of the decoder's largest activation, at the output resolution."""
    if decoder.is_tiny and decoder.path is not None:
        config = json.loads((decoder.path / "config.json").read_text())
        return int(config.get("decoder_block_out_channels", [64])[-1])
    config = json.loads((model_dir / "vae" / "config.json").read_text())
    return vae_peak_channels(config["block_out_channels"])


@dataclass(frozen=True)
class MemoryEstimate:
    parameters: int
    bytes_per_weight: int  # of the compiled weights
    per_image: int  # activations of one image at the size
    size: tuple[int, int]

    @property
    def source(self) -> int:
        return 4 * self.parameters

    @property
    def weights(self) -> int:
        return self.bytes_per_weight * self.parameters

    def static(self, max_batch_size: int) -> int:
        """One compiled model per batch size 1..max_batch_size."""
        shapes = self.weights * max_batch_size + self.per_image * max_batch_size * (max_batch_size + 1) // 2
        return RUNTIME_BYTES + self.source + shapes

    def dynamic(self, max_batch_size: int) -> int:
        """One compiled model whose batch dimension runs 1..max_batch_size."""
        return RUNTIME_BYTES + self.source + self.weights + self.per_image * max_batch_size

    def largest_dynamic_batch(self, limit: int) -> int:
        """The largest batch whose dynamic estimate fits `limit` bytes (0 if not even one image does)."""
        room = limit - (RUNTIME_BYTES + self.source + self.weights)
        return max(0, room // self.per_image)


def estimate(
    model_dir: str | Path, decoder: DecoderChoice, precision: Precision, size: tuple[int, int]
) -> MemoryEstimate:
    """The OpenVINO estimate for the folder's text encoder, UNet and decoder, compiled in `precision` (bf16 / f16 /
    f32; auto must be resolved first), serving images of `size` (width, height)."""
    root = Path(model_dir)
    decoder_dir = decoder.path if decoder.is_tiny and decoder.path is not None else root / "vae"
    parameters = sum(parameter_count(folder) for folder in (root / "text_encoder", root / "unet", decoder_dir))
    width, height = size
    per_image = ACTIVATION_FACTOR * 4 * _decoder_peak_channels(root, decoder) * width * height
    return MemoryEstimate(parameters, 4 if precision is Precision.F32 else 2, per_image, size)


@dataclass(frozen=True)
class MemoryPlan:
    """How the compiled models are laid out to fit: static shapes when they fit, else one dynamic batch dimension."""

    static_shapes: bool
    need: int  # bytes, estimated
    limit: MemoryLimit

    def __str__(self) -> str:
        layout = "a compiled model per batch size" if self.static_shapes else "one model with a dynamic batch"
        return f"memory: {layout}, about {self.need / GiB:.1f} GiB of {self.limit}"


def plan_memory(estimate: MemoryEstimate, max_batch_size: int, limit: MemoryLimit) -> MemoryPlan:
    """Static shapes (fastest: 1.2-1.6x the dynamic model's speed on the shipped model) when all of them fit, else
    one dynamic-batch model per network; MemoryBudgetError naming the numbers and the setting when neither fits."""
    usable = int(limit.bytes * HEADROOM)
    if estimate.static(max_batch_size) <= usable:
        return MemoryPlan(True, estimate.static(max_batch_size), limit)
    need = estimate.dynamic(max_batch_size)
    if need <= usable:
        return MemoryPlan(False, need, limit)
    fits = estimate.largest_dynamic_batch(usable)
    width, height = estimate.size
    advice = (
        f"lower --max-batch-size (SCOTT_MAX_BATCH_SIZE) to {fits} or less"
        if fits >= 1
        else "serve a smaller size, the tiny decoder (--decoder tiny) or a host with more memory"
    )
    raise MemoryBudgetError(
        f"this model needs about {need / GiB:.1f} GiB at max batch {max_batch_size} and {width}x{height} "
        f"({estimate.parameters / 1e6:.0f}M parameters: {estimate.source / GiB:.1f} GiB read, "
        f"{estimate.weights / GiB:.1f} GiB compiled, {estimate.per_image / GiB:.2f} GiB per image), "
        f"but this process may use {limit} and keeps {1 - HEADROOM:.0%} of it free: {advice}"
    )


def served_size(model_dir: str | Path) -> tuple[int, int]:
    """The largest square side the folder serves well (its serving.json sizes), else the one its UNet was built for."""
    root = Path(model_dir)
    card = load_serving_card(root)
    if card.sizes:
        return max(card.sizes), max(card.sizes)
    unet = json.loads((root / "unet" / "config.json").read_text())
    vae = json.loads((root / "vae" / "config.json").read_text())
    side = int(unet["sample_size"]) * 2 ** (len(vae["block_out_channels"]) - 1)
    return side, side


def plan_for_folder(
    model_dir: str | Path,
    decoder: DecoderChoice,
    precision: Precision,
    max_batch_size: int,
    limit: MemoryLimit | None = None,
) -> MemoryPlan:
    """plan_memory for the folder at its served size, against this process's limit unless one is given."""
    found = estimate(require_model_folder(model_dir), decoder, precision, served_size(model_dir))
    return plan_memory(found, max_batch_size, limit or memory_limit())
