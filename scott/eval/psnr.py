"""PSNR between uint8 images: how closely one decoder (or a reconstruction) reproduces another's pixels."""

from __future__ import annotations

import numpy as np
import torch


def psnr(images: np.ndarray | torch.Tensor, reference: np.ndarray | torch.Tensor) -> torch.Tensor:
    """Per-image PSNR in dB of uint8 (B, H, W, 3) images against a reference of the same shape (peak 255).

    Identical images get 128.1 dB (their MSE is clamped at 1e-8) rather than infinity, so means stay finite."""
    a, b = torch.as_tensor(images), torch.as_tensor(reference)
    if a.dtype != torch.uint8 or b.dtype != torch.uint8 or a.shape != b.shape:
        found = f"{a.dtype} {tuple(a.shape)} and {b.dtype} {tuple(b.shape)}"
        raise ValueError(f"expected two uint8 arrays of one shape, got {found}")
    mse = (a.double() - b.double()).pow(2).flatten(1).mean(dim=1)
    return (10 * torch.log10(255.0**2 / mse.clamp(min=1e-8))).float()
