"""Distances for the consistency loss and the hinge losses of the adversarial term."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def pseudo_huber(pred: torch.Tensor, target: torch.Tensor, c: float) -> torch.Tensor:
    """sqrt((pred - target)^2 + c^2) - c, averaged: LCM's Huber distance (c = 0.001 on SD latents).

    L2-like near zero (no kink for the optimiser), L1-like for large errors (robust to the outliers a
    noisy SDE target produces).
    """
    diff = pred.float() - target.float()
    return (torch.sqrt(diff.pow(2) + c * c) - c).mean()


def consistency_distance(pred: torch.Tensor, target: torch.Tensor, kind: str, huber_c: float) -> torch.Tensor:
    """d(f_theta(z_{t_n}), f_{theta^-}(z_hat_{t_m})) for the configured distance."""
    if kind == "huber":
        return pseudo_huber(pred, target, huber_c)
    if kind == "l2":
        return F.mse_loss(pred.float(), target.float())
    raise ValueError(f"unknown distance {kind!r}")


def hinge_d_loss(real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
    """Discriminator hinge loss (Lim & Ye 2017; as in StyleGAN-T/ADD): relu(1 - D(real)) + relu(1 + D(fake))."""
    return F.relu(1.0 - real_logits.float()).mean() + F.relu(1.0 + fake_logits.float()).mean()


def hinge_g_loss(fake_logits: torch.Tensor) -> torch.Tensor:
    """Generator side of the hinge loss: -D(fake)."""
    return -fake_logits.float().mean()
