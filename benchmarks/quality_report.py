"""The quality benchmark's report: every row, each arm over its training seeds (mean ± std), and each arm against the
baseline (LCM) paired by training seed and by held-out prompt.

A row is one student (one arm at one training seed) or the teacher at one step count; its value of a metric is the mean
over the sampling seed sets. An arm's spread is over training seeds: what a rerun of the recipe would move.
Paired tests (scipy.stats): over training seeds (the same seed gives both arms the same data order, timesteps and
noise), a paired t-test; over held-out prompts, the per-prompt prompt accuracy averaged over seeds, a paired t-test
and a Wilcoxon signed-rank test.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Sequence

import numpy as np
from rich.console import Console
from rich.table import Table
from scipy import stats

from scott.eval.spread import mean_std

# (metric, header, higher is better). fd_low is the headline: of the distances only it ranks the teacher's step
# counts in order (benchmarks/eval_validation.py; the classifier-feature FID and recall do not, so they stay in the
# JSON only). Per-attribute accuracies are shown beside it; COMPARED are the metrics that pass the validation.
SHOWN = (
    ("fd_low", "FD low ↓", False),
    ("prompt_accuracy", "prompt acc ↑", True),
    ("accuracy_shape", "shape ↑", True),
    ("accuracy_color", "colour ↑", True),
    ("accuracy_color_on_white", "colour on white ↑", True),
    ("accuracy_size", "size ↑", True),
    ("accuracy_position", "position ↑", True),
    ("accuracy_background", "background ↑", True),
    ("precision", "precision ↑", True),
    ("coverage", "coverage ↑", True),
)
COMPARED = ("fd_low", "prompt_accuracy", "accuracy_color", "accuracy_size", "precision", "coverage")
BASELINE = "lcm"


def _digits(metric: str) -> int:
    return 3


def arms(rows: Sequence[dict]) -> dict[tuple[str, int], dict]:
    """(group, steps) -> {'label', 'seeds', 'values': {metric: [one per seed]}, 'mean', 'std'} over training seeds."""
    grouped: dict[tuple[str, int], list[dict]] = defaultdict(list)
    for row in rows:
        if "group" in row:  # a student of an arm (not the teacher, not a --reference model)
            grouped[(row["group"], row["steps"])].append(row)
    out = {}
    for key, members in grouped.items():
        members = sorted(members, key=lambda r: r["seed"])
        values = {m: [r["mean"][m] for r in members if m in r["mean"]] for m, _, _ in SHOWN}
        values = {m: v for m, v in values.items() if len(v) == len(members)}
        out[key] = {
            "label": members[0]["label"],
            "seeds": [r["seed"] for r in members],
            "values": values,
            "mean": {m: mean_std(v)[0] for m, v in values.items()},
            "std": {m: mean_std(v)[1] for m, v in values.items()},
        }
    return out


def _per_prompt(rows: Sequence[dict], group: str, steps: int) -> dict[int, np.ndarray]:
    """seed -> per-prompt prompt accuracy (mean over the row's sampling seed sets)."""
    out = {}
    for row in rows:
        if row.get("group") == group and row["steps"] == steps:
            out[row["seed"]] = np.mean([run["per_prompt"]["prompt_accuracy"] for run in row["runs"]], axis=0)
    return out


def _t_test(a: Sequence[float], b: Sequence[float]) -> float:
    """Two-sided paired t-test p-value (nan below 2 pairs or with no variance in the differences)."""
    d = np.asarray(a, dtype=float) - np.asarray(b, dtype=float)
    if len(d) < 2 or np.allclose(d, d[0]):
        return float("nan")
    return float(stats.ttest_rel(a, b).pvalue)


def compare(rows: Sequence[dict], baseline: str = BASELINE) -> dict[str, dict]:
    """'<group>@<steps>' -> each compared metric's paired difference against the baseline at the same steps:
    {'diff', 'diff_std', 'relative' (for distances, % of the baseline), 'p_seeds', 'seeds'}, plus
    'prompts': the per-prompt prompt accuracy difference over held-out prompts with its t and Wilcoxon p-values."""
    by_arm = arms(rows)
    out: dict[str, dict] = {}
    for (group, steps), arm in sorted(by_arm.items()):
        base = by_arm.get((baseline, steps))
        if group == baseline or base is None:
            continue
        seeds = [s for s in arm["seeds"] if s in base["seeds"]]
        if not seeds:
            continue
        entry: dict = {"seeds": seeds}
        for metric in COMPARED:
            if metric not in arm["values"] or metric not in base["values"]:
                continue
            a = [arm["values"][metric][arm["seeds"].index(s)] for s in seeds]
            b = [base["values"][metric][base["seeds"].index(s)] for s in seeds]
            diff, diff_std = mean_std(x - y for x, y in zip(a, b, strict=True))
            entry[metric] = {"diff": diff, "diff_std": diff_std, "p_seeds": _t_test(a, b)}
            if metric == "fd_low":
                entry[metric]["relative_pct"] = 100.0 * diff / float(np.mean(b))
        pa, pb = _per_prompt(rows, group, steps), _per_prompt(rows, baseline, steps)
        a = np.mean([pa[s] for s in seeds], axis=0)
        b = np.mean([pb[s] for s in seeds], axis=0)
        d = a - b
        entry["prompts"] = {
            "n": len(d),
            "diff": float(d.mean()),
            "p_t": _t_test(a, b),
            "p_wilcoxon": float(stats.wilcoxon(a, b).pvalue) if np.any(d != 0) else float("nan"),
        }
        out[f"{group}@{steps}"] = entry
    return out


def _cell(mean: float, std: float | None, metric: str) -> str:
    digits = _digits(metric)
    return f"{mean:.{digits}f}" + (f" ± {std:.{digits}f}" if std is not None else "")


def rows_table(title: str, rows: Sequence[dict]) -> Table:
    table = Table(title=title)
    for header in ("sampler", "train seed", "steps"):
        table.add_column(header, justify="right" if header != "sampler" else "left")
    for _, header, _ in SHOWN:
        table.add_column(header, justify="right")
    for row in rows:
        seed = str(row["seed"]) if "group" in row else "-"
        many = len(row["runs"]) > 1
        cells = [
            _cell(row["mean"][m], row["std"][m] if many else None, m) if m in row["mean"] else "-" for m, _, _ in SHOWN
        ]
        table.add_row(row["label"], seed, str(row["steps"]), *cells)
    return table


def arms_table(by_arm: dict[tuple[str, int], dict]) -> Table:
    table = Table(title="Each arm over its training seeds (mean ± std over seeds)")
    for header in ("arm", "seeds", "steps"):
        table.add_column(header)
    for _, header, _ in SHOWN:
        table.add_column(header, justify="right")
    for (_, steps), arm in by_arm.items():
        many = len(arm["seeds"]) > 1
        cells = [
            _cell(arm["mean"][m], arm["std"][m] if many else None, m) if m in arm["mean"] else "-" for m, _, _ in SHOWN
        ]
        table.add_row(arm["label"], ",".join(map(str, arm["seeds"])), str(steps), *cells)
    return table


def comparison_table(comparisons: dict[str, dict], baseline: str = BASELINE) -> Table:
    table = Table(title=f"Against {baseline}, paired by training seed (p: paired t-test) and by held-out prompt")
    table.add_column("arm @ steps")
    table.add_column("seeds", justify="right")
    table.add_column("fd_low Δ% (p)", justify="right")
    shown = [m for m in COMPARED if m != "fd_low"]
    for metric in shown:
        table.add_column(f"{metric} Δ (p)", justify="right")
    table.add_column("prompt acc Δ over prompts (p t / Wilcoxon)", justify="right")
    for name, c in comparisons.items():
        fd = c.get("fd_low")
        cells = [name, str(len(c["seeds"])), "-" if fd is None else f"{fd['relative_pct']:+.1f}% ({fd['p_seeds']:.2g})"]
        for metric in shown:
            m = c.get(metric)
            cells.append("-" if m is None else f"{m['diff']:+.3f} ({m['p_seeds']:.2g})")
        p = c["prompts"]
        cells.append(f"{p['diff']:+.3f} ({p['p_t']:.2g} / {p['p_wilcoxon']:.2g}, n={p['n']})")
        table.add_row(*cells)
    return table


def print_report(console: Console, rows: Sequence[dict], floor: dict[str, float], comparisons: dict[str, dict]) -> None:
    console.print(rows_table("Every row (mean ± std over sampling seed sets)", rows))
    console.print(arms_table(arms(rows)))
    if comparisons:
        console.print(comparison_table(comparisons))
    if floor:
        shown = {m for m, _, _ in SHOWN}
        text = ", ".join(f"{k} {v:.3f}" for k, v in floor.items() if k in shown and math.isfinite(v))
        console.print(f"real-vs-real floor at this sample count (a perfect generator): {text}")
