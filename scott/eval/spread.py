"""Run-to-run spread of a metric: mean ± std over seeds (or splits), so one number is read with its noise."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable


def mean_std(values: Iterable[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (0 for a single value)."""
    v = [float(x) for x in values]
    if not v:
        raise ValueError("mean_std of no values")
    mean = sum(v) / len(v)
    var = sum((x - mean) ** 2 for x in v) / (len(v) - 1) if len(v) > 1 else 0.0
    return mean, math.sqrt(var)


def spread(metric_fn: Callable[[int], dict[str, float]], seeds: Iterable[int]) -> dict[str, tuple[float, float]]:
    """Run metric_fn(seed) for every seed; (mean, std) of each metric that every run returned."""
    runs = [metric_fn(seed) for seed in seeds]
    if not runs:
        raise ValueError("spread needs at least one seed")
    keys = [k for k in runs[0] if all(k in r for r in runs)]
    return {k: mean_std(r[k] for r in runs) for k in keys}


def format_spread(stats: dict[str, tuple[float, float]], digits: int = 3) -> dict[str, str]:
    """{'fid': '1.234 ± 0.056', ...} for tables."""
    return {k: f"{m:.{digits}f} ± {s:.{digits}f}" for k, (m, s) in stats.items()}
