"""The quality benchmark's rows: scott.eval metrics of one sampler (teacher DDIM + CFG, or a student through the
serving pipeline) at one step count, over one or more sampling seeds, cached on disk so a rerun skips them; and
the sample grid (prompt -> samples of several samplers at one seed)."""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from scott.atomic import write_json_atomic
from scott.eval.classifier import AttributeClassifier
from scott.eval.evaluate import GenerateFn, evaluate
from scott.eval.spread import mean_std

# The metrics every row reports (scott.eval.evaluate computes more; they are kept in the JSON).
METRICS = ("fd_low", "fid", "prompt_accuracy", "precision", "recall", "density", "coverage")
SEED_STRIDE = 100_000  # sampling seed set j draws seeds j * SEED_STRIDE + (0 .. n_per_prompt - 1)


@dataclass(frozen=True)
class EvalSettings:
    prompts: tuple[str, ...]  # held-out captions
    n_per_prompt: int
    seed_sets: int  # > 1 gives the run-to-run spread of each metric (mean ± std over sampling seeds)
    batch_size: int = 64

    def seeds(self) -> list[int]:
        return [j * SEED_STRIDE for j in range(self.seed_sets)]


def _row_key(row: str, model_stamp: str, params: dict, settings: EvalSettings) -> str:
    payload = json.dumps([row, model_stamp, params, asdict(settings)], sort_keys=True, default=str)
    return hashlib.sha1(payload.encode()).hexdigest()


def evaluate_row(
    row: str,
    generate_fn: GenerateFn,
    settings: EvalSettings,
    classifier: AttributeClassifier,
    cache_dir: Path,
    model_stamp: str,
    params: dict,
) -> dict:
    """{'row', 'params', 'mean': {metric: value}, 'std': {...}, 'runs': [evaluate() per seed set], 'cached'}.

    The result is stored under cache_dir/<row>.json with a key over the model's files, the sampler's params and
    the eval settings; a later call with the same key reads it instead of sampling again.
    """
    key = _row_key(row, model_stamp, params, settings)
    path = cache_dir / f"{row.replace('/', '_')}.json"
    if path.is_file():
        stored = json.loads(path.read_text())
        if stored.get("key") == key:
            return {**stored, "cached": True}
    runs = [
        evaluate(
            generate_fn,
            list(settings.prompts),
            settings.n_per_prompt,
            classifier,
            seed=seed,
            batch_size=settings.batch_size,
            real_floor=False,
        )
        for seed in settings.seeds()
    ]
    numeric = [k for k, v in runs[0].items() if isinstance(v, int | float)]
    stats = {k: mean_std(r[k] for r in runs) for k in numeric}
    result = {
        "row": row,
        "key": key,
        "params": params,
        "mean": {k: m for k, (m, _) in stats.items()},
        "std": {k: s for k, (_, s) in stats.items()},
        "runs": runs,
    }
    cache_dir.mkdir(parents=True, exist_ok=True)
    write_json_atomic(path, result)
    return {**result, "cached": False}


def finite_metrics(result: dict) -> bool:
    return all(math.isfinite(result["mean"][k]) for k in METRICS)


def sample_grid(columns: Sequence[tuple[str, GenerateFn]], prompts: Sequence[str], seed: int, scale: int) -> np.ndarray:
    """uint8 (rows * S * scale, cols * S * scale, 3): one row per prompt, one column per sampler, all at `seed`."""
    if not columns or not prompts:
        raise ValueError("a grid needs at least one column and one prompt")
    cells = np.stack([fn(list(prompts), [seed] * len(prompts)) for _, fn in columns], axis=1)  # (R, C, H, W, 3)
    rows, cols, h, w, _ = cells.shape
    grid = cells.transpose(0, 2, 1, 3, 4).reshape(rows * h, cols * w, 3)
    return np.repeat(np.repeat(grid, scale, axis=0), scale, axis=1)


def write_grid(
    path: Path, columns: Sequence[tuple[str, GenerateFn]], prompts: Sequence[str], seed: int, scale: int
) -> Path:
    """The grid PNG at `path` and, next to it (same name, .txt), the column labels and one prompt per row."""
    grid = sample_grid(columns, prompts, seed, scale)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(grid).save(path)
    lines = [f"columns: {' | '.join(label for label, _ in columns)}", f"seed: {seed}", "rows:"]
    lines += [f"{i + 1}. {p}" for i, p in enumerate(prompts)]
    path.with_suffix(".txt").write_text("\n".join(lines) + "\n")
    return path
