"""How far a serving variant (the tiny decoder, OpenVINO's bf16, another backend) moves the model's images from the
weights as trained (torch f32, full decoder): PSNR against the reference image of the same seed, and the attribute
classifier's reads of both, on held-out prompts at 1/2/4 steps; plus a grid (reference | each variant).

    .venv/bin/python -m benchmarks.fidelity [--model models/scott-tiny] [--prompts 100] [--per-prompt 4]
        [--variant tiny=torch:f32:tiny] [--variant openvino=openvino:auto:full]
        [--json benchmarks/results/fidelity.json] [--grid benchmarks/results/fidelity_grid.png]

A variant is NAME=BACKEND:PRECISION:DECODER (engines.load_options.LoadOptions' fields). Every pipeline renders the same
prompts and seeds, so images pair: per attribute, an exact McNemar test on the images one read right and the other
wrong says whether a variant's accuracy change is more than chance (400 unpaired images could not tell 0.02 apart).
Targets: PSNR >= 28 dB, and every attribute accuracy within 0.02 of the reference's.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch
from rich.console import Console
from rich.table import Table
from scipy import stats

from benchmarks.quality_eval import write_grid
from engines.load_options import LoadOptions
from engines.loader import load_pipeline
from scott.atomic import write_json_atomic
from scott.data.attributes import ATTRIBUTE_NAMES, parse_caption
from scott.eval import eval_prompts
from scott.eval.classifier import load_classifier
from scott.eval.evaluate import generate_images, to_classifier_input
from scott.eval.generators import pipeline_generate_fn
from scott.eval.prompt_accuracy import every_named_right, named_right
from scott.eval.psnr import psnr
from scott.pipeline import TextToImagePipeline

ROOT = Path(__file__).resolve().parents[1]
MODEL = ROOT / "models" / "scott-tiny"
RESULTS = Path(__file__).resolve().parent / "results"
REFERENCE = "torch:f32:full"
DEFAULT_VARIANTS = ("tiny=torch:f32:tiny", "openvino=openvino:auto:full")
PSNR_TARGET, ACCURACY_TOLERANCE = 28.0, 0.02


def shown(path: Path) -> str:
    """A path as the JSON records it: relative to the repo when inside it."""
    path = path.resolve()
    return str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path)


def load(model: Path, spec: str) -> TextToImagePipeline:
    """BACKEND:PRECISION:DECODER -> the pipeline on CPU."""
    parts = spec.split(":")
    if len(parts) != 3:
        raise SystemExit(f"a pipeline is BACKEND:PRECISION:DECODER, got {spec!r}")
    backend, precision, decoder = parts
    return load_pipeline(model, LoadOptions(backend, "cpu", precision, decoder=decoder))


def right_per_attribute(predicted: torch.Tensor, targets: torch.Tensor) -> dict[str, np.ndarray]:
    """attribute -> (images naming it,) bool: read right; plus 'prompt': every named attribute right."""
    right = {name: r.numpy() for name, r in named_right(predicted, targets).items()}
    return {"prompt": every_named_right(predicted, targets).numpy(), **right}


def mcnemar_p(reference: np.ndarray, variant: np.ndarray) -> float:
    """Exact two-sided McNemar p-value of paired right/wrong reads (1.0 when no image changed)."""
    gained, lost = int(np.sum(variant & ~reference)), int(np.sum(reference & ~variant))
    return 1.0 if gained + lost == 0 else float(stats.binomtest(gained, gained + lost, 0.5).pvalue)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, default=MODEL)
    parser.add_argument("--reference", default=REFERENCE, help="BACKEND:PRECISION:DECODER every variant is held to")
    parser.add_argument("--variant", action="append", default=None, help="NAME=BACKEND:PRECISION:DECODER (repeat)")
    parser.add_argument("--steps", default="1,2,4")
    parser.add_argument("--prompts", type=int, default=100, help="held-out prompts")
    parser.add_argument("--per-prompt", type=int, default=4, help="images (seeds) per prompt")
    parser.add_argument("--json", type=Path, default=RESULTS / "fidelity.json")
    parser.add_argument("--grid", type=Path, default=RESULTS / "fidelity_grid.png")
    parser.add_argument("--grid-prompts", type=int, default=8)
    args = parser.parse_args(argv)
    console = Console(width=160)

    variants: dict[str, str] = {}
    for item in args.variant or DEFAULT_VARIANTS:
        name, sep, spec = item.partition("=")
        if not sep:
            raise SystemExit(f"--variant is NAME=BACKEND:PRECISION:DECODER, got {item!r}")
        variants[name] = spec
    reference = load(args.model, args.reference)
    pipelines = {name: load(args.model, spec) for name, spec in variants.items()}
    # What each ran as: "auto" resolves to the runtime's precision on this CPU.
    ran_as = {
        name: f"{variants[name]} ({p.backend.__class__.__name__}, {p.backend.precision})"
        for name, p in pipelines.items()
    }
    classifier = load_classifier()
    prompts = eval_prompts(args.prompts)
    pairs = [(p, seed) for p in prompts for seed in range(args.per_prompt)]
    targets = torch.tensor([parse_caption(p).labels() for p, _ in pairs])

    def reads(images: np.ndarray) -> dict[str, np.ndarray]:
        predicted, _ = classifier.predict(to_classifier_input(images, classifier.config.image_size))
        return right_per_attribute(predicted, targets)

    rows = []
    for steps in (int(s) for s in args.steps.split(",")):
        started = time.perf_counter()
        base_images = generate_images(pipeline_generate_fn(reference, steps), pairs)
        base = reads(base_images)
        for name, pipeline in pipelines.items():
            images = generate_images(pipeline_generate_fn(pipeline, steps), pairs)
            scores = psnr(images, base_images)
            right = reads(images)
            row = {"variant": name, "steps": steps, "psnr": float(scores.mean()), "psnr_min": float(scores.min())}
            for attribute, ref_right in base.items():
                row[attribute] = {
                    "reference": float(ref_right.mean()),
                    "variant": float(right[attribute].mean()),
                    "difference": float(right[attribute].mean() - ref_right.mean()),
                    "changed": int(np.sum(right[attribute] != ref_right)),
                    "p_mcnemar": mcnemar_p(ref_right, right[attribute]),
                }
            rows.append(row)
        console.print(f"[fidelity] {steps} steps: {time.perf_counter() - started:.0f} s", markup=False)

    attributes = ["prompt", *(n for n in ATTRIBUTE_NAMES if n in rows[0])]
    table = Table(title=f"variants vs {args.reference}, {args.prompts} held-out prompts x {args.per_prompt}")
    for column in ("variant", "steps", "PSNR dB (min)", *(f"{a} ref / var (p)" for a in attributes)):
        table.add_column(column, justify="left" if column == "variant" else "right")
    for row in rows:
        cells = [f"{row[a]['reference']:.3f} / {row[a]['variant']:.3f} ({row[a]['p_mcnemar']:.2g})" for a in attributes]
        table.add_row(row["variant"], str(row["steps"]), f"{row['psnr']:.2f} ({row['psnr_min']:.1f})", *cells)
    console.print(table)
    for row in rows:
        differences = [row[a]["difference"] for a in attributes if a != "prompt"]
        met = row["psnr"] >= PSNR_TARGET and max(abs(d) for d in differences) <= ACCURACY_TOLERANCE
        console.print(
            f"target {row['variant']} {row['steps']}-step: PSNR {row['psnr']:.2f} >= {PSNR_TARGET} dB and accuracies "
            f"within {ACCURACY_TOLERANCE} (worst drop {min(differences):+.3f}, worst gain {max(differences):+.3f}): "
            + ("met" if met else "NOT met"),
            markup=False,
        )

    columns = [("reference 1-step", pipeline_generate_fn(reference, 1))]
    columns += [(f"{name} 1-step", pipeline_generate_fn(p, 1)) for name, p in pipelines.items()]
    columns += [("reference 4-step", pipeline_generate_fn(reference, 4))]
    columns += [(f"{name} 4-step", pipeline_generate_fn(p, 4)) for name, p in pipelines.items()]
    write_grid(args.grid, columns, prompts[: args.grid_prompts], seed=0, scale=2)
    summary = {
        "model": shown(args.model),
        "reference": args.reference,
        "variants": ran_as,
        "prompts": args.prompts,
        "per_prompt": args.per_prompt,
        "rows": rows,
        "grid": shown(args.grid),
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
    }
    write_json_atomic(args.json, summary)
    console.print(f"wrote {args.json} and {args.grid}", markup=False)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
