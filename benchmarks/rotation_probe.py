"""Does random rotation keep a teacher from drawing shapes? Fine-tune a trained teacher on training images whose
rotation is limited to +-MAX_DEG, and score its samples' attributes with the evaluation classifier.

The procedural data rotates every shape uniformly over 360 degrees, and all shapes have the same area: averaged
over rotation, a square, a star and a circle are the same round blob. A denoiser must break that symmetry before
the shape word can matter. Run it twice side by side, limited and full (180), from the same teacher with the same
budget: the full run is the control for "it only needed more steps".

    python benchmarks/rotation_probe.py --teacher runs/x2/teacher/model --max-deg 15 --steps 1000 --json r15.json
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import json
import math
import time
from pathlib import Path

import numpy as np
import torch

import scott.data.render as render
from scott.data import Attributes
from scott.eval.classifier import load_classifier
from scott.eval.evaluate import evaluate
from scott.eval.prompts import eval_prompts
from scott.models import PRESETS, load_model
from scott.recipe.config import RecipeConfig
from scott.recipe.ddim import teacher_sample
from scott.recipe.latents import LatentSet, encode_images, tokenize
from scott.recipe.teacher import make_step_fn
from scott.schedule import NoiseSchedule


def limit_rotation(max_deg: float) -> None:
    """Make the data's renderer draw rotations uniform in +-max_deg (same random draw, rescaled)."""
    full = render.draw_params

    def draw_params(attrs: Attributes, rng: np.random.Generator) -> render.RenderParams:
        params = full(attrs, rng)
        fraction = params.rotation / (2 * math.pi)  # uniform in [0, 1)
        return dataclasses.replace(params, rotation=(2 * fraction - 1) * math.radians(max_deg))

    render.draw_params = draw_params


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--teacher", type=Path, required=True, help="diffusers folder of a trained teacher")
    parser.add_argument("--max-deg", type=float, default=15.0, help="rotation limit; 180 or more keeps the data's")
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--images", type=int, default=10_000)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--json", type=Path, required=True)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.max_deg < 180:
        limit_rotation(args.max_deg)

    bundle = load_model(args.teacher)
    text_encoder, unet = bundle.text_encoder, bundle.unet
    start = time.time()
    mean, std, foreground, captions = encode_images(bundle.vae, args.images, batch_size=64)
    data = LatentSet(mean, std, tokenize(bundle.tokenizer, captions), captions, foreground)
    print(f"encoded {args.images} images in {time.time() - start:.0f} s", flush=True)

    # The recipe's teacher step (posterior samples, 10% caption dropout, v-MSE, batch 32) at its final lr.
    unet.train().requires_grad_(True)
    ema = copy.deepcopy(unet).eval().requires_grad_(False)
    optimizer = torch.optim.AdamW(unet.parameters(), lr=2.5e-4, weight_decay=1e-2)
    schedule = NoiseSchedule.from_config(PRESETS["tiny"]["scheduler"])
    empty_ids = tokenize(bundle.tokenizer, [""])[0]
    step_fn = make_step_fn(text_encoder, unet, schedule, data, empty_ids, RecipeConfig())
    generator = torch.Generator().manual_seed(1)
    start = time.time()
    for step in range(args.steps):
        loss, _ = step_fn(step, generator)
        optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(unet.parameters(), 1.0)
        optimizer.step()
        with torch.no_grad():
            decay = min(0.99, (1 + step) / (10 + step))
            for averaged, live in zip(ema.parameters(), unet.parameters(), strict=True):
                averaged.lerp_(live, 1 - decay)
        if step % 100 == 0:
            print(step, round(loss.item(), 4), f"{(time.time() - start) / (step + 1):.2f} s/step", flush=True)

    bundle.unet = ema
    classifier = load_classifier()
    prompts = eval_prompts(48, "heldout")
    results = {}
    for steps in (4, 25):
        metrics = evaluate(
            lambda ps, seeds, steps=steps: teacher_sample(bundle, ps, seeds, steps, 4.0),
            prompts, 4, classifier, real_floor=False,
        )  # fmt: skip
        results[steps] = {
            k: round(v, 3) for k, v in metrics.items() if k.startswith("accuracy_") or k == "prompt_accuracy"
        }
        print("DDIM", steps, results[steps], flush=True)
    record = {"teacher": str(args.teacher), "max_deg": args.max_deg, "steps": args.steps, "results": results}
    args.json.write_text(json.dumps(record, indent=1) + "\n")


if __name__ == "__main__":
    main()
