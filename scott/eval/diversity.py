"""k-NN manifold metrics in feature space: precision/recall (Kynkäänniemi et al. 2019) and density/coverage
(Naeem et al. 2020). Precision and density ask whether generated samples look real; recall and coverage ask
whether the generated samples cover the real distribution (the diversity that a mode-collapsed model lacks)."""

from __future__ import annotations

import numpy as np
import torch


def _distances(a: torch.Tensor, b: torch.Tensor, chunk: int = 4096) -> torch.Tensor:
    return torch.cat([torch.cdist(x, b) for x in a.split(chunk)])


def _kth_neighbour_radius(x: torch.Tensor, k: int) -> torch.Tensor:
    """Distance from each point to its k-th nearest other point of the same set."""
    if len(x) <= k:
        raise ValueError(f"need more than k={k} points, got {len(x)}")
    d = _distances(x, x)
    return d.kthvalue(k + 1, dim=1).values  # +1: each point is its own nearest neighbour at distance 0


def prdc(real: np.ndarray, fake: np.ndarray, k: int = 5) -> dict[str, float]:
    """precision, recall, density, coverage of fake (M, D) against real (N, D) features, with k-NN balls."""
    r = torch.as_tensor(np.asarray(real), dtype=torch.float32)
    f = torch.as_tensor(np.asarray(fake), dtype=torch.float32)
    real_radius = _kth_neighbour_radius(r, k)
    fake_radius = _kth_neighbour_radius(f, k)
    d = _distances(r, f)  # (N, M)
    inside_real = d < real_radius[:, None]  # fake j lies in the k-NN ball of real i
    precision = inside_real.any(dim=0).float().mean()
    recall = (d < fake_radius[None, :]).any(dim=1).float().mean()
    density = inside_real.float().sum(dim=0).mean() / k
    coverage = (d.min(dim=1).values < real_radius).float().mean()
    return {
        "precision": float(precision),
        "recall": float(recall),
        "density": float(density),
        "coverage": float(coverage),
    }
