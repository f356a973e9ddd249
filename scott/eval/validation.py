"""What an evaluation must rank before it is used: real images above lightly degraded ones above heavily degraded
ones, and the teacher at 25 > 4 > 2 > 1 DDIM steps (benchmarks/eval_validation.py runs both on every metric).

Degradations of uint8 (B, H, W, 3) images, each at a light and a heavy level:
- blur: a Gaussian blur (sigma in pixels at 64x64);
- noise: additive Gaussian pixel noise (std in uint8 levels), clipped;
- color: one random colour shift per image (a random direction in RGB, length in uint8 levels), clipped.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence

import numpy as np
from PIL import Image, ImageFilter

# kind -> (light, heavy) level
DEGRADATIONS: dict[str, tuple[float, float]] = {"blur": (0.7, 2.0), "noise": (8.0, 32.0), "color": (16.0, 64.0)}


def degrade(images: np.ndarray, kind: str, level: float, seed: int = 0) -> np.ndarray:
    """uint8 (B, H, W, 3) -> the same images degraded by `kind` at `level` (deterministic in seed)."""
    rng = np.random.default_rng(seed)
    if kind == "blur":
        blur = ImageFilter.GaussianBlur(radius=level)
        return np.stack([np.asarray(Image.fromarray(im).filter(blur)) for im in images])
    x = images.astype(np.float64)
    if kind == "noise":
        x = x + rng.normal(0.0, level, size=x.shape)
    elif kind == "color":
        direction = rng.normal(size=(len(images), 1, 1, 3))
        x = x + level * direction / np.linalg.norm(direction, axis=-1, keepdims=True)
    else:
        raise ValueError(f"unknown degradation {kind!r}; expected one of {sorted(DEGRADATIONS)}")
    return np.clip(np.round(x), 0, 255).astype(np.uint8)


def in_order(
    values: Mapping[str, float], best_first: Sequence[str], higher_is_better: bool, strict: bool = True
) -> bool:
    """Whether values[best_first[0]] is better than values[best_first[1]], and so on down the list; with strict=False
    ties are allowed but the last must still be worse than the first (an accuracy at its ceiling of 1.0 on real and
    lightly degraded images)."""
    seq = [values[k] if higher_is_better else -values[k] for k in best_first]
    pairs = list(itertools.pairwise(seq))
    if strict:
        return all(a > b for a, b in pairs)
    return all(a >= b for a, b in pairs) and seq[0] > seq[-1]
