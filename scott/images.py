"""Pixels between the networks' [-1, 1] float range and uint8: the one copy of each conversion."""

from __future__ import annotations

import numpy as np
import torch


class NonFiniteImages(ValueError):
    """The networks produced NaN or Inf pixels (most often an fp16 overflow in the VAE decoder)."""

    def __init__(self, bad: int, total: int) -> None:
        super().__init__(f"{bad} of {total} images came out of the networks with NaN or Inf pixels")
        self.bad, self.total = bad, total


def to_uint8(images: torch.Tensor) -> np.ndarray:
    """(B,3,H,W) in [-1, 1] -> (B,H,W,3) uint8, rounding as diffusers' image processor does.

    Done on the device: a quarter of the bytes cross to the host, and the host does no float math.
    Raises NonFiniteImages rather than let a clamp turn NaN into a black image nobody is told about.
    """
    finite = torch.isfinite(images).flatten(1).all(dim=1)
    if not bool(finite.all()):
        raise NonFiniteImages(int((~finite).sum()), len(images))
    pixels = ((images.float() / 2 + 0.5).clamp(0, 1) * 255).round().to(torch.uint8)
    return pixels.permute(0, 2, 3, 1).contiguous().cpu().numpy()


def images_to_tensor(images: np.ndarray | torch.Tensor) -> torch.Tensor:
    """uint8 (B, H, W, 3) -> float32 (B, 3, H, W) in [-1, 1] (the VAE's and the classifier's input range)."""
    x = torch.as_tensor(images)
    if x.dtype != torch.uint8:
        raise TypeError(f"expected uint8 images, got {x.dtype}")
    return x.permute(0, 3, 1, 2).float().div(127.5).sub(1.0)
