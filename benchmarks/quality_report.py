"""The quality benchmark's report: rich tables of the rows, SCott's gain over vanilla CD per step count, and the
issue's targets (>= 10% lower FID than CD at 1 and 2 steps; higher recall and coverage)."""

from __future__ import annotations

import math
from collections.abc import Sequence

from rich.console import Console
from rich.table import Table

from scott.eval.spread import mean_std

FID_TARGET_PCT = 10.0  # SCott's FID at least this much below vanilla CD's ...
FID_TARGET_STEPS = (1, 2)  # ... at these step counts
SHOWN = (("fid", "FID ↓"), ("prompt_accuracy", "prompt acc ↑"), ("precision", "precision ↑"))
SHOWN += (("recall", "recall ↑"), ("coverage", "coverage ↑"), ("density", "density"))


def _cell(row: dict, metric: str) -> str:
    mean, std = row["mean"][metric], row["std"][metric]
    digits = 2 if metric == "fid" else 3
    text = f"{mean:.{digits}f}"
    return text + (f" ± {std:.{digits}f}" if len(row["runs"]) > 1 else "")


def improvements(rows: Sequence[dict]) -> dict[str, dict]:
    """Per step count where both CD and SCott rows exist: SCott's % FID improvement over CD (mean ± std over the
    paired sampling seed sets) and its recall / coverage gains, with whether each target is met."""
    by = {(r["model"], r["steps"]): r for r in rows}
    out: dict[str, dict] = {}
    for (model, steps), cd in sorted(by.items(), key=lambda kv: kv[0][1]):
        scott = by.get(("scott", steps))
        if model != "cd" or scott is None:
            continue
        pct = [100.0 * (c["fid"] - s["fid"]) / c["fid"] for c, s in zip(cd["runs"], scott["runs"], strict=True)]
        fid_mean, fid_std = mean_std(pct)
        entry = {
            "fid_improvement_pct": fid_mean,
            "fid_improvement_pct_std": fid_std,
            "recall_gain": scott["mean"]["recall"] - cd["mean"]["recall"],
            "coverage_gain": scott["mean"]["coverage"] - cd["mean"]["coverage"],
        }
        entry["diversity_target_met"] = entry["recall_gain"] > 0 and entry["coverage_gain"] > 0
        if steps in FID_TARGET_STEPS:
            entry["fid_target_met"] = fid_mean >= FID_TARGET_PCT
        out[str(steps)] = entry
    return out


def rows_table(title: str, rows: Sequence[dict], knobs: bool = False) -> Table:
    table = Table(title=title)
    table.add_column("sampler")
    table.add_column("steps", justify="right")
    if knobs:
        for name in ("η", "h", "λ_adv"):
            table.add_column(name, justify="right")
    for _, header in SHOWN:
        table.add_column(header, justify="right")
    for row in rows:
        cells = [row["label"], str(row["steps"])]
        if knobs:
            k = row.get("knobs") or {}
            cells += [f"{k.get(n, float('nan')):g}" for n in ("eta", "h", "adv")]
        table.add_row(*cells, *(_cell(row, m) for m, _ in SHOWN))
    return table


def improvement_table(gains: dict[str, dict]) -> Table:
    table = Table(title=f"SCott vs vanilla CD (target: FID ≥ {FID_TARGET_PCT:g}% lower at 1 and 2 steps)")
    for header in ("steps", "FID improvement", "FID target", "recall gain", "coverage gain", "diversity target"):
        table.add_column(header, justify="right")
    for steps, g in gains.items():
        pct = f"{g['fid_improvement_pct']:+.1f}%"
        if g["fid_improvement_pct_std"] > 0:
            pct += f" ± {g['fid_improvement_pct_std']:.1f}"
        fid_ok = {True: "met", False: "missed"}.get(g.get("fid_target_met"), "-")
        table.add_row(
            steps,
            pct,
            fid_ok,
            f"{g['recall_gain']:+.3f}",
            f"{g['coverage_gain']:+.3f}",
            "met" if g["diversity_target_met"] else "missed",
        )
    return table


def print_report(console: Console, rows: Sequence[dict], floor: dict[str, float], gains: dict[str, dict]) -> None:
    main = [r for r in rows if r["model"] in ("teacher", "cd", "scott")]
    ablation = [r for r in rows if r["model"] not in ("teacher", "cd")]
    console.print(rows_table("Teacher vs vanilla CD vs SCott (same teacher, same distillation budget)", main))
    if any(r["model"] not in ("teacher", "cd", "scott") for r in ablation):
        console.print(rows_table("Ablation over η, h and λ_adv (everything else as SCott)", ablation, knobs=True))
    if gains:
        console.print(improvement_table(gains))
    if floor:
        text = ", ".join(f"{k} {v:.3f}" for k, v in floor.items() if k in dict(SHOWN) and math.isfinite(v))
        console.print(f"real-vs-real floor at this sample count (a perfect generator): {text}")
