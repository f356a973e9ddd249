"""Tiny decoder vs full decoder on the same latents: PSNR against the full decoder's image, and the attribute
classifier's accuracies of both, on held-out prompts at 1/2/4 steps; plus a grid (full | tiny, same seeds).

    .venv/bin/python benchmarks/decoder_quality.py [--model models/scott-tiny] [--prompts 100] [--per-prompt 4]
        [--json benchmarks/results/decoder_quality.json] [--grid benchmarks/results/decoder_grid.png]

Both pipelines run the same weights on the same backend (torch f32 by default: the weights as trained), so the
UNet's latents are bit-identical and the decoder is the only difference. Targets: PSNR >= 28 dB, and every
attribute accuracy within 0.02 of the full decoder's.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.table import Table

# The repo first: benchmarks/engines.py must not shadow the engines package.
sys.path[:0] = [str(Path(__file__).resolve().parents[1]), str(Path(__file__).resolve().parent)]

from quality_eval import write_grid  # noqa: E402

from engines import load_pipeline  # noqa: E402
from scott.eval import eval_prompts, evaluate  # noqa: E402
from scott.eval.generators import pipeline_generate_fn  # noqa: E402
from scott.eval.psnr import psnr  # noqa: E402

MODEL = Path(__file__).resolve().parents[1] / "models" / "scott-tiny"
RESULTS = Path(__file__).resolve().parent / "results"
PSNR_TARGET, ACCURACY_TOLERANCE = 28.0, 0.02
ATTRIBUTES = ("shape", "color", "size", "position", "background")


def recording(generate_fn):
    """generate_fn that also keeps every batch it made, in order."""
    made: list[np.ndarray] = []

    def generate(prompts: list[str], seeds: list[int]) -> np.ndarray:
        images = generate_fn(prompts, seeds)
        made.append(images)
        return images

    return generate, made


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, default=MODEL)
    parser.add_argument("--backend", default="torch", help="the runtime both decoders run on")
    parser.add_argument("--precision", default="f32")
    parser.add_argument("--steps", default="1,2,4")
    parser.add_argument("--prompts", type=int, default=100, help="held-out prompts")
    parser.add_argument("--per-prompt", type=int, default=4, help="images (seeds) per prompt")
    parser.add_argument("--json", type=Path, default=RESULTS / "decoder_quality.json")
    parser.add_argument("--grid", type=Path, default=RESULTS / "decoder_grid.png")
    parser.add_argument("--grid-prompts", type=int, default=8)
    args = parser.parse_args(argv)
    console = Console(width=140)

    pipelines = {
        decoder: load_pipeline(args.model, args.backend, "cpu", precision=args.precision, decoder=decoder)
        for decoder in ("full", "tiny")
    }
    prompts = eval_prompts(args.prompts)
    rows = []
    for steps in (int(s) for s in args.steps.split(",")):
        started = time.perf_counter()
        metrics, images = {}, {}
        for decoder, pipeline in pipelines.items():
            generate, images[decoder] = recording(pipeline_generate_fn(pipeline, steps))
            metrics[decoder] = evaluate(generate, prompts, args.per_prompt, real_floor=False)
        scores = psnr(np.concatenate(images["tiny"]), np.concatenate(images["full"]))
        row = {"steps": steps, "psnr": float(scores.mean()), "psnr_min": float(scores.min()), "images": len(scores)}
        for name in ATTRIBUTES:
            full, tiny = metrics["full"][f"accuracy_{name}"], metrics["tiny"][f"accuracy_{name}"]
            row[name] = {"full": full, "tiny": tiny, "difference": tiny - full}
        row["seconds"] = round(time.perf_counter() - started, 1)
        rows.append(row)

    table = Table(title=f"tiny vs full decoder, {args.prompts} held-out prompts x {args.per_prompt} ({args.backend})")
    table.add_column("steps")
    table.add_column("PSNR dB (min)", justify="right")
    for name in ATTRIBUTES:
        table.add_column(f"{name} full / tiny", justify="right")
    for row in rows:
        cells = [f"{row[n]['full']:.3f} / {row[n]['tiny']:.3f}" for n in ATTRIBUTES]
        table.add_row(str(row["steps"]), f"{row['psnr']:.2f} ({row['psnr_min']:.1f})", *cells)
    console.print(table)
    for row in rows:
        differences = [row[n]["difference"] for n in ATTRIBUTES]
        worst = max(abs(d) for d in differences)
        met = row["psnr"] >= PSNR_TARGET and worst <= ACCURACY_TOLERANCE
        verdict = "[green]met[/green]" if met else "[red]NOT met[/red]"
        console.print(
            f"target {row['steps']}-step: PSNR {row['psnr']:.2f} >= {PSNR_TARGET} dB and accuracies within "
            f"{ACCURACY_TOLERANCE} (tiny - full: worst drop {min(differences):+.3f}, "
            f"worst gain {max(differences):+.3f}): {verdict}"
        )

    columns = [
        (f"{decoder} {steps}-step", pipeline_generate_fn(pipelines[decoder], steps))
        for steps in (1, 4)
        for decoder in ("full", "tiny")
    ]
    write_grid(args.grid, columns, prompts[: args.grid_prompts], seed=0, scale=2)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    summary = {
        "model": str(args.model),
        "backend": f"{args.backend} {args.precision}",
        "prompts": args.prompts,
        "per_prompt": args.per_prompt,
        "rows": rows,
        "grid": str(args.grid),
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
    }
    args.json.write_text(json.dumps(summary, indent=2) + "\n")
    console.print(f"wrote {args.json} and {args.grid}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
