"""Does the evaluation rank quality? Every metric of scott.eval.evaluate on sets whose order is known.

    .venv/bin/python -m benchmarks.eval_validation --teacher runs/embedded/teacher/model \
        [--prompts 50] [--n-per-prompt 10] [--json benchmarks/results/eval_validation.json]

Known orders, on held-out prompts:
1. real images > lightly degraded > heavily degraded ones, for blur, pixel noise and colour shifts
   (scott/eval/validation.py's levels), scored exactly as a model's images are (evaluate() on a generate_fn);
2. the teacher (DDIM with CFG) at 25 > 4 > 2 > 1 steps.
A distance passes when it orders every set strictly; an accuracy may tie on real and lightly degraded images (its
ceiling is 1.0) but must drop for the heavy ones, and must order the teacher's steps strictly. The quality benchmark
ranks models only by metrics that pass.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
from rich.console import Console
from rich.table import Table

from scott.atomic import write_json_atomic
from scott.eval.classifier import load_classifier
from scott.eval.evaluate import evaluate
from scott.eval.generators import real_generate_fn, teacher_generate_fn
from scott.eval.prompts import eval_prompts
from scott.eval.validation import DEGRADATIONS, in_order

# metric -> higher is better
DISTANCES = {"fid": False, "fd_low": False}
SCORES = {"prompt_accuracy": True, "precision": True, "recall": True, "coverage": True}
SCORES |= {f"accuracy_{a}": True for a in ("shape", "color", "size", "position", "background")}


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--teacher", type=Path, default=None, help="a CFG teacher folder (without it: degradations only)")
    p.add_argument("--teacher-steps", default="1,2,4,25")
    p.add_argument("--guidance", type=float, default=8.0, help="the teacher's CFG scale (the quality benchmark's)")
    p.add_argument("--prompts", type=int, default=50)
    p.add_argument("--n-per-prompt", type=int, default=10)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--json", type=Path, default=None)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    console = Console(width=None if sys.stdout.isatty() else 200)
    classifier = load_classifier()
    prompts = eval_prompts(args.prompts, "heldout")

    def score(fn) -> dict:
        return evaluate(fn, prompts, args.n_per_prompt, classifier, real_floor=False)

    sets: dict[str, dict] = {"real": score(real_generate_fn(None, 0.0))}
    for kind, (light, heavy) in DEGRADATIONS.items():
        sets[f"{kind} light"] = score(real_generate_fn(kind, light))
        sets[f"{kind} heavy"] = score(real_generate_fn(kind, heavy))
    steps = [int(s) for s in args.teacher_steps.split(",") if s.strip()] if args.teacher else []
    if args.teacher:
        from scott.models import load_model

        teacher = load_model(args.teacher)
        for n in steps:
            sets[f"teacher {n}"] = score(teacher_generate_fn(teacher, n, args.guidance))

    verdicts: dict[str, dict[str, bool]] = {}
    for metric, higher in {**DISTANCES, **SCORES}.items():
        values = {name: s[metric] for name, s in sets.items()}
        # Accuracies may tie at 1.0 on real and lightly degraded images: distances must order strictly, scores weakly.
        strict = metric in DISTANCES
        checks = {
            kind: in_order(values, ["real", f"{kind} light", f"{kind} heavy"], higher, strict) for kind in DEGRADATIONS
        }
        if steps:
            checks["teacher steps"] = in_order(values, [f"teacher {n}" for n in sorted(steps, reverse=True)], higher)
        verdicts[metric] = checks

    table = Table(title="Does each metric rank sets of known order? (✓ = in order)")
    table.add_column("metric")
    for name in sets:
        table.add_column(name, justify="right")
    for check in next(iter(verdicts.values())):
        table.add_column(check, justify="center")
    for metric, checks in verdicts.items():
        cells = [f"{sets[name][metric]:.3f}" for name in sets]
        table.add_row(metric, *cells, *("✓" if ok else "✗" for ok in checks.values()))
    console.print(table)
    passed = [m for m, c in verdicts.items() if all(c.values())]
    console.print(f"pass every check: {', '.join(passed) or 'none'}")
    report = {
        "settings": {
            "teacher": str(args.teacher),
            "guidance": args.guidance,
            "prompts": args.prompts,
            "n_per_prompt": args.n_per_prompt,
            "degradations": DEGRADATIONS,
        },
        "sets": {name: {k: v for k, v in s.items() if k != "per_prompt"} for name, s in sets.items()},
        "checks": verdicts,
        "passed": passed,
    }
    if args.json:
        write_json_atomic(args.json, report)
        console.print(f"JSON: {args.json}")
    return report


if __name__ == "__main__":
    main()
