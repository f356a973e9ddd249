"""`python -m scott.recipe.embedded --out runs/embedded [--config configs/recipe/embedded.toml] [--resume]`.

Runs the embedded model's recipe stage by stage: VAE -> latent cache -> teacher -> distilled student (scott.distill)
-> tiny decoder (an AutoencoderTiny distilled from the VAE decoder, on the student's latents too) -> export.
Every stage checkpoints under <out>/<stage>/ and is skipped on resume once complete; the run is deterministic
from the config's seed (and the thread count: float sums depend on how work is split).
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from pathlib import Path

import torch

from scott.data.render import IMAGE_SIZE
from scott.decoder import TINY_SUBFOLDER
from scott.models import SUBFOLDERS, TINY_EXAMPLES, ServingCard, write_serving_card
from scott.recipe.config import RecipeConfig, load_config
from scott.recipe.distill_hook import run_distill_stage, student_dir
from scott.recipe.latents import run_latents_stage
from scott.recipe.teacher import run_teacher_stage, teacher_dir
from scott.recipe.tiny_decoder import run_tiny_decoder_stage
from scott.recipe.vae import adopt_vae_stage, run_vae_stage
from scott.tokenizer import load_tokenizer, write_clip_tokenizer
from scott.train.log import say

STAGES = ("vae", "latents", "teacher", "distill", "tiny_decoder")
# The exported model's serving.json: trained on IMAGE_SIZE images only (at twice that, objects come out doubled and
# misplaced: issue 23), so it declares that one size; prompts in the data's vocabulary.
SERVING = ServingCard(examples=TINY_EXAMPLES, sizes=(IMAGE_SIZE,))


def run_recipe(
    out: Path, cfg: RecipeConfig, until: str = STAGES[-1], export: Path | None = None, vae: Path | None = None
) -> Path:
    """Run every stage up to `until` (those already complete are skipped); return the exported model folder.

    vae: a trained VAE folder to adopt instead of training the vae stage.
    """
    if until not in STAGES:
        raise ValueError(f"until must be one of {STAGES}, got {until!r}")
    out.mkdir(parents=True, exist_ok=True)
    (out / "recipe.json").write_text(json.dumps(cfg.to_dict(), indent=2) + "\n")
    torch.set_num_threads(cfg.threads)
    tokenizer = load_tokenizer(write_clip_tokenizer(out / "tokenizer"))
    runners = {
        "vae": lambda: run_vae_stage(out, cfg) if vae is None else adopt_vae_stage(out, cfg, vae),
        "latents": lambda: run_latents_stage(out, cfg, tokenizer),
        "teacher": lambda: run_teacher_stage(out, cfg, tokenizer),
        "distill": lambda: run_distill_stage(out, cfg, teacher_dir(out)),
        "tiny_decoder": lambda: run_tiny_decoder_stage(out, cfg, student_dir(out)),  # writes <student>/vae_tiny
    }
    final = teacher_dir(out)
    for name in STAGES[: STAGES.index(until) + 1]:
        if name == "distill" and not cfg.distill.enabled:
            say(name, "disabled in the config; exporting the teacher")
            break
        if name == "tiny_decoder" and not cfg.tiny_decoder.enabled:
            say(name, "disabled in the config")
            break
        start = time.perf_counter()
        runners[name]()
        say(name, f"done in {time.perf_counter() - start:.0f} s")
        if name == "distill":
            final = student_dir(out)
    if until in ("vae", "latents"):
        return out
    target = export or out / "final"
    export_model(final, target)
    say("export", f"{final} -> {target}")
    return target


def export_model(source: Path, target: Path) -> Path:
    """Copy only the model parts of a folder (a trainer may keep checkpoints and logs beside them), with its tiny
    decoder when it has one, and write the embedded model's serving.json (SERVING)."""
    if target.resolve() == source.resolve():
        return target
    if target.exists():
        shutil.rmtree(target)
    target.mkdir(parents=True)
    for name in SUBFOLDERS + ((TINY_SUBFOLDER,) if (source / TINY_SUBFOLDER).is_dir() else ()):
        shutil.copytree(source / name, target / name)
    shutil.copy2(source / "model_index.json", target / "model_index.json")
    write_serving_card(target, SERVING)
    return target


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m scott.recipe.embedded", description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="run directory (stages, checkpoints, logs)")
    parser.add_argument("--config", type=Path, default=None, help="recipe TOML (default: built-in defaults)")
    parser.add_argument("--resume", action="store_true", help="continue a run in an existing --out")
    parser.add_argument("--until", choices=STAGES, default=STAGES[-1], help="last stage to run")
    parser.add_argument("--export", type=Path, default=None, help="copy the final model folder here")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (overrides the config)")
    parser.add_argument("--vae", type=Path, default=None, help="adopt this trained VAE folder instead of training one")
    args = parser.parse_args(argv)
    if args.out.exists() and any(args.out.iterdir()) and not args.resume:
        parser.error(f"{args.out} is not empty: pass --resume to continue that run, or pick a new --out")
    cfg = load_config(args.config)
    if args.threads is not None:
        cfg.threads = args.threads
    run_recipe(args.out, cfg, args.until, args.export, args.vae)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
