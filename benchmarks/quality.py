"""Quality benchmark: the SCott paper's comparison in miniature, on one teacher with one distillation budget.

    .venv/bin/python -m benchmarks.quality --teacher runs/embedded/teacher/model [--data procedural:10000]
        [--work runs/quality] [--only cd,scott] [--budget-steps N] [--prompts 50] [--n-per-prompt 10]
        [--eval-seeds 2] [--jobs 2] [--json FILE] [--grid FILE]

Rows: the teacher (DDIM with classifier-free guidance) at 1/2/4/25 steps, and each student at 1/2/4 steps through the
serving pipeline. Students: the paper's methods (configs/distill/methods/: LCM, CD with h ODE sub-steps, LCM + the
adversarial loss, SCott) over the scale config, and an ablation of SCott's eta, h, lambda_adv and eta_reference, each
at every --train-seeds seed. Every student is distilled from the same teacher on the same data with the same budget:
only the named knob and the seed differ. Metrics (scott.eval, on held-out prompts; benchmarks/eval_validation.py
checks which rank quality; the tables show those, the JSON every metric): fd_low, prompt and per-attribute accuracy,
colour accuracy on each background, precision / coverage; with several --eval-seeds each row is the mean over
sampling seed sets. Then each arm over its training seeds, each arm against LCM paired by seed and by prompt
(quality_report.py), a JSON file and a grid PNG (rows = held-out prompts, listed in a .txt beside it).

Resumable: each variant trains in its own folder under --work and is skipped once complete (an interrupted one is
resumed by the distiller from its last checkpoint); each evaluated row is cached under <work>/eval.
"""

from __future__ import annotations

import argparse
import json
import sys
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path
from typing import Any

import torch
from rich.console import Console

from benchmarks.quality_eval import EvalSettings, evaluate_row, write_grid
from benchmarks.quality_report import compare, print_report
from benchmarks.quality_variants import (
    DistillRun,
    FolderMismatch,
    Variant,
    build_variants,
    check_folder,
    dir_stamp,
    distill_variant,
    knob_values,
)
from scott.eval.generators import teacher_generate_fn

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_BASE = ROOT / "configs" / "distill" / "tiny.toml"


def _floats(text: str) -> list[float]:
    return [float(x) for x in text.split(",") if x.strip()]


def _ints(text: str) -> list[int]:
    return [int(x) for x in text.split(",") if x.strip()]


def _names(text: str) -> list[str]:
    return [x.strip() for x in text.split(",") if x.strip()]


def _option_value(text: str) -> Any:
    """A number, boolean or null as JSON reads it (JSON takes 1e-4, YAML 1.1 would not), else the raw string."""
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--teacher", type=Path, required=True, help="diffusers folder, UNet without a guidance embedding")
    p.add_argument("--data", default="procedural:10000", help="distillation data spec (overrides the base config's)")
    p.add_argument("--work", type=Path, default=ROOT / "runs" / "quality", help="one folder per variant + eval cache")
    p.add_argument("--scale-config", type=Path, default=DEFAULT_BASE, help="the DistillConfig file every arm shares")
    methods = ["lcm", "cd", "adversarial", "scott"]
    p.add_argument("--methods", type=_names, default=methods, help="files of configs/distill/methods/")
    p.add_argument("--train-seeds", type=_ints, default=[0], help="training seeds of every arm: >1 gives mean ± std")
    p.add_argument("--only", type=_names, default=None, help="arms to run (lcm, scott, scott-eta0.6, ...)")
    p.add_argument("--train-only", action="store_true", help="distill every variant, evaluate nothing")
    p.add_argument("--eval-only", action="store_true", help="evaluate the complete variants, train none")
    p.add_argument("--budget-steps", type=int, default=None, help="distillation steps of every variant")
    p.add_argument("--distill-option", action="append", default=[], metavar="KEY=VALUE", help="for every variant")
    p.add_argument("--jobs", type=int, default=1, help="distillations side by side (1 torch thread each fits 2 cores)")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: the base config's cpu_threads)")
    p.add_argument("--ablate-eta", type=_floats, default=[0.15, 0.6], help="SCott's eta (read on SD-1.5's schedule)")
    p.add_argument("--ablate-h", type=_ints, default=[])
    p.add_argument("--ablate-adv", type=_floats, default=[])
    p.add_argument("--ablate-ref", type=_names, default=["none"], help="eta_reference: none = eta as is")
    p.add_argument("--no-ablation", action="store_true", help="only the methods")
    p.add_argument(
        "--reference", action="append", default=[], metavar="NAME=DIR", help="another distilled model to score alike"
    )
    p.add_argument("--steps", type=_ints, default=[1, 2, 4], help="student sampling steps")
    p.add_argument("--teacher-steps", type=_ints, default=[1, 2, 4, 25], help="teacher DDIM steps ('' for none)")
    p.add_argument("--guidance", type=float, default=8.0, help="w of every sampler (the distilled models' default)")
    p.add_argument("--teacher-guidance", type=float, default=None, help="the teacher's CFG scale (default: --guidance)")
    p.add_argument("--gamma", type=float, default=None, help="student sampler gamma (default: the model's)")
    p.add_argument("--prompts", type=int, default=50, help="held-out prompts")
    p.add_argument("--n-per-prompt", type=int, default=10)
    p.add_argument("--eval-seeds", type=int, default=2, help="sampling seed sets: >1 gives mean ± std")
    p.add_argument("--eval-batch", type=int, default=64)
    p.add_argument("--classifier", type=Path, default=None, help="default: models/classifier")
    p.add_argument("--json", type=Path, default=None, help="default: <work>/quality.json")
    p.add_argument("--grid", type=Path, default=None, help="default: <work>/grid.png (+ grid.txt)")
    p.add_argument("--grid-prompts", type=int, default=6)
    p.add_argument("--grid-scale", type=int, default=2, help="nearest-neighbour upscale of each cell")
    p.add_argument("--grid-seed", type=int, default=0)
    p.add_argument("--no-progress", action="store_true", help="no distillation progress bars")
    p.add_argument("--device", default="cpu", help="where the teacher and students sample (cpu, cuda)")
    return p


def _distill_run(args: argparse.Namespace) -> DistillRun:
    from scott.distill.config import load_config, read_config_file

    base = read_config_file(args.scale_config)
    base.pop("data", None)  # the data is --data, the same for every variant
    for option in args.distill_option:
        key, sep, value = option.partition("=")
        if not sep:
            raise SystemExit(f"--distill-option needs KEY=VALUE, got {option!r}")
        base[key.strip().replace("-", "_")] = _option_value(value)
    if args.budget_steps is not None:
        base["steps"] = args.budget_steps
    if args.threads is not None:
        base["cpu_threads"] = args.threads
    # Validate once, and pin every default the base leaves open (a later change of a default must not reuse folders).
    pinned = load_config(None, **base).to_dict()
    pinned = {k: v for k, v in pinned.items() if k not in ("teacher", "out", "work_dir", "data", "extras")}
    return DistillRun(teacher=args.teacher, data=args.data, work=args.work, base=pinned, progress=not args.no_progress)


def _select(variants: list[Variant], only: list[str] | None) -> list[Variant]:
    if only is None:
        return variants
    known = {v.group for v in variants}
    unknown = [w for w in only if w not in known]
    if unknown:
        raise SystemExit(f"unknown arms {unknown}; known: {', '.join(sorted(known))}")
    return [v for v in variants if v.group in only]


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = build_parser().parse_args(argv)
    console = Console(width=None if sys.stdout.isatty() else 160)  # a log file gets whole tables, not 80 columns
    run = _distill_run(args)
    ablation = {"eta": args.ablate_eta, "h": args.ablate_h, "adv": args.ablate_adv, "ref": args.ablate_ref}
    ablation = {} if args.no_ablation else {k: v for k, v in ablation.items() if v}
    variants = _select(build_variants(run.base, args.methods, args.train_seeds, ablation), args.only)
    states = {v.name: check_folder(run, v) for v in variants}  # refuses a folder made for another run, up front
    if args.eval_only:  # e.g. while the remaining variants train in another process
        pending = [name for name, state in states.items() if state != "complete"]
        if pending:
            console.print(f"[quality] not complete, left out: {', '.join(pending)}", markup=False)
        variants = [v for v in variants if states[v.name] == "complete"]
    threads = int(run.base.get("cpu_threads") or 0)
    if threads > 0:
        torch.set_num_threads(threads)
    if args.train_only:
        with ThreadPoolExecutor(max_workers=args.jobs) as pool:
            for done in pool.map(lambda v: distill_variant(run, v, args.jobs > 1), variants):
                console.print(f"[quality] {done.variant.name}: {done.status}, {done.seconds_per_step:.2f} s/step")
        return {}

    from engines.load_options import LoadOptions
    from engines.loader import load_pipeline
    from scott.eval.classifier import load_classifier
    from scott.eval.floor import real_vs_real
    from scott.eval.generators import pipeline_generate_fn
    from scott.eval.prompts import eval_prompts
    from scott.models import load_model

    teacher = load_model(args.teacher).to(args.device)
    if teacher.has_guidance_embedding:
        raise SystemExit(f"{args.teacher} has a guidance embedding: that is a distilled model, not a CFG teacher")
    classifier = load_classifier(args.classifier)
    prompts = eval_prompts(args.prompts, "heldout")
    settings = EvalSettings(tuple(prompts), args.n_per_prompt, args.eval_seeds, args.eval_batch)
    cache = args.work / "eval"
    teacher_w = args.guidance if args.teacher_guidance is None else args.teacher_guidance
    floor = real_vs_real(classifier, prompts, args.n_per_prompt)

    rows: list[dict] = []

    def add(row: dict) -> None:
        rows.append(row)
        how = "cached" if row["cached"] else "evaluated"
        console.print(
            f"[quality] {row['label']} @ {row['steps']} steps ({how}): fd_low {row['mean']['fd_low']:.3f}, "
            f"prompt acc {row['mean']['prompt_accuracy']:.3f}, colour {row['mean']['accuracy_color']:.3f}, "
            f"coverage {row['mean']['coverage']:.3f}",
            markup=False,
        )

    pipelines, distilled = {}, {}

    def score_student(name: str, folder: Path, fields: dict):
        """Rows of a distilled model at every --steps through the serving pipeline (a variant or a --reference)."""
        pipeline = load_pipeline(folder, LoadOptions("torch", args.device))
        gamma = pipeline.info.default_gamma if args.gamma is None else args.gamma
        stamp = dir_stamp(folder)
        for steps in args.steps:
            params = {"sampler": "consistency", "steps": steps, "guidance": args.guidance, "gamma": gamma}
            fn = pipeline_generate_fn(pipeline, steps, args.guidance, gamma)
            result = evaluate_row(f"{name}@{steps}", fn, settings, classifier, cache, stamp, params)
            add({**result, **fields, "steps": steps})
        return pipeline

    # Distillations run --jobs at a time as subprocesses, while the teacher's rows are evaluated here; each student
    # is evaluated as soon as it is done.
    with ThreadPoolExecutor(max_workers=args.jobs) as pool:
        futures = [pool.submit(distill_variant, run, v, args.jobs > 1) for v in variants]
        try:
            teacher_stamp = dir_stamp(args.teacher.resolve())
            for steps in args.teacher_steps:
                params = {"sampler": "ddim", "steps": steps, "guidance": teacher_w}
                fn = teacher_generate_fn(teacher, steps, teacher_w)
                result = evaluate_row(f"teacher@{steps}", fn, settings, classifier, cache, teacher_stamp, params)
                add({**result, "model": "teacher", "label": f"teacher DDIM, CFG {teacher_w:g}", "steps": steps})
            for reference in args.reference:
                name, sep, folder = reference.partition("=")
                if not sep:
                    raise SystemExit(f"--reference needs NAME=DIR, got {reference!r}")
                score_student(name, Path(folder), {"model": name, "label": f"{name} ({folder})"})
            for future in as_completed(futures):
                done = future.result()
                variant = done.variant
                distilled[variant.name] = done
                fields = {"model": variant.name, "group": variant.group, "seed": variant.seed, "label": variant.label}
                fields["knobs"] = knob_values(run.base, variant)
                pipelines[variant.name] = score_student(variant.name, done.model_dir, fields)
        except BaseException:
            for future in futures:
                future.cancel()  # the running ones finish (and stay resumable); the queued ones never start
            raise
    order = {v.name: i for i, v in enumerate(variants)}
    rows.sort(key=lambda r: (order.get(r["model"], -1 if r["model"] == "teacher" else len(order)), r["steps"]))

    grid_path = args.grid or args.work / "grid.png"
    columns = _grid_columns(args, teacher, teacher_w, pipelines, pipeline_generate_fn)
    if columns and args.grid_prompts > 0:
        write_grid(grid_path, columns, prompts[: args.grid_prompts], args.grid_seed, args.grid_scale)
        console.print(f"[quality] grid: {grid_path} (prompts in {grid_path.with_suffix('.txt')})", markup=False)

    comparisons = compare(rows)
    print_report(console, rows, floor, comparisons)
    report = {
        "settings": {
            "teacher": str(args.teacher),
            "data": args.data,
            "distill_base": run.base,
            "guidance": args.guidance,
            "teacher_guidance": teacher_w,
            "gamma": args.gamma,
            "device": args.device,
            "eval": {"prompts": len(prompts), "n_per_prompt": args.n_per_prompt, "seed_sets": args.eval_seeds},
        },
        "floor": floor,
        "variants": {
            d.variant.name: {
                "label": d.variant.label,
                "overrides": d.variant.overrides,
                "knobs": knob_values(run.base, d.variant),
                "status": d.status,
                "steps": d.steps,
                "seconds_per_step": d.seconds_per_step,
                "distill_seconds": d.distill_seconds,
                "model_dir": str(d.model_dir),
            }
            for d in sorted(distilled.values(), key=lambda d: order[d.variant.name])
        },
        "rows": rows,
        "comparisons": comparisons,
        "grid": str(grid_path) if columns else None,
    }
    json_path = args.json or args.work / "quality.json"
    json_path.parent.mkdir(parents=True, exist_ok=True)
    json_path.write_text(json.dumps(report, indent=2, default=str) + "\n")
    console.print(f"[quality] JSON: {json_path}", markup=False)
    return report


def _grid_columns(args, teacher, teacher_w, pipelines, pipeline_generate_fn) -> list[tuple[str, Any]]:
    """The teacher at its most steps, LCM at its fewest, SCott at every step count (training seed 0 of each)."""
    columns: list[tuple[str, Any]] = []
    if args.teacher_steps:
        top = max(args.teacher_steps)
        columns.append((f"teacher DDIM {top}", teacher_generate_fn(teacher, top, teacher_w)))
    lcm, scott = pipelines.get("lcm-seed0"), pipelines.get("scott-seed0")
    if lcm is not None:
        low = min(args.steps)
        columns.append((f"LCM {low}", pipeline_generate_fn(lcm, low, args.guidance, args.gamma)))
    if scott is not None:
        for steps in args.steps:
            columns.append((f"SCott {steps}", pipeline_generate_fn(scott, steps, args.guidance, args.gamma)))
    return columns


if __name__ == "__main__":
    try:
        main()
    except FolderMismatch as err:
        sys.exit(f"quality benchmark: {err}")
