"""Does a model draw the named colour on every background? Colour accuracy per background colour, prompts balanced.

    .venv/bin/python -m benchmarks.colour_by_background shipped=models/scott-tiny \
        [teacher=runs/embedded/teacher/model] [--steps 1,2] [--teacher-steps 25] [--json FILE]

For each background of the data, the first --prompts held-out captions on that background (each names a colour),
--n-per-prompt seeds each, scored by the attribute classifier (scott.eval.evaluate's accuracy_color). A distilled
model runs through the serving pipeline at its default guidance; a CFG teacher (no guidance embedding) runs DDIM
at --teacher-guidance. The first row is real renders of the same prompts: the classifier's ceiling per background.
A defect on one background (a colour turning into its pastel on white) hides in the overall accuracy, and the
quality benchmark's 50 prompts hold only ~8 per background: this balanced set is what a per-background claim needs.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
from rich.console import Console
from rich.table import Table

from scott.atomic import write_json_atomic
from scott.data.attributes import BACKGROUNDS
from scott.eval.classifier import load_classifier
from scott.eval.evaluate import colour_by_background
from scott.eval.generators import pipeline_generate_fn, real_generate_fn, teacher_generate_fn
from scott.eval.prompts import prompts_by_background


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("models", nargs="+", help="NAME=DIR model folders (distilled or CFG teacher)")
    p.add_argument("--steps", default="1,2", help="sampling steps of distilled models")
    p.add_argument("--teacher-steps", default="25", help="DDIM steps of a CFG teacher")
    p.add_argument("--guidance", type=float, default=None, help="w of distilled models (default: the model's)")
    p.add_argument("--teacher-guidance", type=float, default=8.0, help="CFG scale of a teacher (quality benchmark's)")
    p.add_argument("--prompts", type=int, default=24, help="held-out captions per background")
    p.add_argument("--n-per-prompt", type=int, default=4)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--json", type=Path, default=None)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    console = Console(width=None if sys.stdout.isatty() else 200)
    classifier = load_classifier()
    try:
        prompts = prompts_by_background(args.prompts)
    except ValueError as e:
        raise SystemExit(f"--prompts: {e}") from None

    def per_background(fn) -> dict[str, float]:
        return colour_by_background(fn, prompts, args.n_per_prompt, classifier)

    from scott.models import load_model
    from scott.pipeline import TextToImagePipeline

    rows: list[dict] = [{"model": "real renders", "steps": None, "color": per_background(real_generate_fn())}]
    for spec in args.models:
        name, sep, folder = spec.partition("=")
        if not sep:
            raise SystemExit(f"models are NAME=DIR, got {spec!r}")
        bundle = load_model(folder)
        if bundle.has_guidance_embedding:
            pipeline = TextToImagePipeline.from_bundle(bundle)
            w = pipeline.info.default_guidance_scale if args.guidance is None else args.guidance
            for steps in (int(s) for s in args.steps.split(",")):
                fn = pipeline_generate_fn(pipeline, steps, w)
                rows.append({"model": name, "steps": steps, "guidance": w, "color": per_background(fn)})
        else:
            for steps in (int(s) for s in args.teacher_steps.split(",")):
                fn = teacher_generate_fn(bundle, steps, args.teacher_guidance)
                rows.append(
                    {"model": name, "steps": steps, "guidance": args.teacher_guidance, "color": per_background(fn)}
                )
        console.print(f"[colour] {name} done", markup=False)

    table = Table(title=f"Colour accuracy per background ({args.prompts} held-out prompts x {args.n_per_prompt} each)")
    for column in ("model", "steps", "w", *BACKGROUNDS, "worst"):
        table.add_column(column, justify="left" if column == "model" else "right")
    for row in rows:
        colour = row["color"]
        row["worst"] = min(colour.values())
        w = row.get("guidance")
        table.add_row(
            row["model"],
            "" if row["steps"] is None else str(row["steps"]),
            "" if w is None else f"{w:g}",
            *(f"{colour[bg]:.2f}" for bg in BACKGROUNDS),
            f"{row['worst']:.2f}",
        )
    console.print(table)
    report = {"settings": {"prompts": args.prompts, "n_per_prompt": args.n_per_prompt}, "rows": rows}
    if args.json:
        write_json_atomic(args.json, report)
        console.print(f"JSON: {args.json}")
    return report


if __name__ == "__main__":
    main()
