"""Where a model loses the shape of its prompt: the VAE, the latent band the shape lives in, or the teacher.

    python benchmarks/shape_diagnosis.py --model runs/e3/teacher/model [--prompts 60] [--json FILE]
    python benchmarks/shape_diagnosis.py --vae runs/embedded/vae/model     # a VAE alone: rows 1 and 2

Held-out prompts x 4 rendered images, shapes read back by the shipped attribute classifier, by size:
1. real images; the VAE's reconstructions (posterior mean).
2. low-passed latents: decode(gaussian blur of z) and decode(upsample(downscale(z))). If the shape survives only
   unblurred, it lives in the latents' highest spatial frequencies, the band a small diffusion model fits last.
3. with a UNet without a guidance embedding (a teacher): DDIM 25 from pure noise, and DDIM (10 steps, CFG 4) from
   the real latent noised to timestep t, for large shapes: how much noise the teacher can take before the shape goes.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from diffusers import AutoencoderKL
from rich.console import Console
from rich.table import Table

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from scott.data.attributes import ATTRIBUTE_NAMES, SIZES, parse_caption  # noqa: E402
from scott.eval.classifier import load_classifier  # noqa: E402
from scott.eval.evaluate import real_images, to_classifier_input  # noqa: E402
from scott.eval.prompts import eval_prompts  # noqa: E402
from scott.models import load_model  # noqa: E402
from scott.recipe.ddim import cfg_model, ddim_sample, encode_prompts, teacher_sample  # noqa: E402
from scott.recipe.vae import downscale  # noqa: E402

PER_PROMPT = 4
SHAPE, SIZE = ATTRIBUTE_NAMES.index("shape"), ATTRIBUTE_NAMES.index("size")  # label columns


def gaussian_blur(z: torch.Tensor, sigma: float) -> torch.Tensor:
    """Per-channel 5x5 gaussian blur of latents, replicate-padded."""
    r = torch.arange(-2.0, 3.0)
    k = torch.exp(-(r**2) / (2 * sigma**2))
    k = (k[:, None] * k[None]) / k.sum() ** 2
    c = z.shape[1]
    return F.conv2d(F.pad(z, (2, 2, 2, 2), mode="replicate"), k.expand(c, 1, 5, 5).to(z), groups=c)


def shape_by_size(classifier, images: torch.Tensor, targets: np.ndarray) -> dict[str, float]:
    """Shape accuracy per size class present and over all; images float in [-1, 1]."""
    labels = classifier.predict(images.clamp(-1, 1))[0].numpy()
    right = labels[:, SHAPE] == targets[:, SHAPE]
    sizes = targets[:, SIZE]
    out = {size: float(right[sizes == i].mean()) for i, size in enumerate(SIZES) if (sizes == i).any()}
    return out | {"all": float(right.mean())}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    which = p.add_mutually_exclusive_group(required=True)
    which.add_argument("--model", help="diffusers folder (VAE; UNet rows if it has no guidance embedding)")
    which.add_argument("--vae", help="an AutoencoderKL folder alone")
    p.add_argument("--prompts", type=int, default=60)
    p.add_argument("--json", type=Path)
    args = p.parse_args()
    torch.manual_seed(0)
    classifier = load_classifier()
    bundle = load_model(args.model) if args.model else None
    vae = bundle.vae if bundle else AutoencoderKL.from_pretrained(args.vae, local_files_only=True).eval()
    sf = vae.config.scaling_factor
    prompts = eval_prompts(args.prompts, "heldout")
    per_image = [q for q in prompts for _ in range(PER_PROMPT)]
    targets = np.array([parse_caption(q).labels() for q in per_image])
    real = to_classifier_input(real_images(prompts, PER_PROMPT))
    rows: dict[str, dict[str, float]] = {"real images": shape_by_size(classifier, real, targets)}
    with torch.no_grad():
        z = vae.encode(real).latent_dist.mean
        rows["VAE reconstruction"] = shape_by_size(classifier, vae.decode(z).sample, targets)
        for sigma in (0.5, 0.7, 1.0):
            blurred = vae.decode(gaussian_blur(z, sigma)).sample
            rows[f"latent blur σ={sigma} cell"] = shape_by_size(classifier, blurred, targets)
        down_up = F.interpolate(downscale(z, 0.5), size=z.shape[-2:], mode="bilinear", align_corners=False)
        rows["latent 2x down, bilinear up"] = shape_by_size(classifier, vae.decode(down_up).sample, targets)
        if bundle and not bundle.has_guidance_embedding:
            images = teacher_sample(bundle, per_image, list(range(len(per_image))), 25, 4.0)
            rows["teacher DDIM 25, CFG 4"] = shape_by_size(classifier, to_classifier_input(images), targets)
            large = targets[:, SIZE] == SIZES.index("large")
            z0, text = z[large] * sf, encode_prompts(bundle, [q for q, m in zip(per_image, large, strict=True) if m])
            model = cfg_model(bundle, text, encode_prompts(bundle, [""]), 4.0)
            for t in (100, 300, 500, 700, 999):
                zt = bundle.schedule.add_noise(z0, torch.randn_like(z0), torch.full((len(z0),), t))
                out = ddim_sample(model, bundle.schedule, zt, torch.linspace(t, 0, 11).round().long()[:-1])
                rows[f"teacher denoises large shapes from t={t}"] = shape_by_size(
                    classifier, vae.decode(out / sf).sample, targets[large]
                )
    table = Table(title=f"Shape accuracy by size ({len(prompts)} held-out prompts x {PER_PROMPT}; chance 0.20)")
    for col in ("", *SIZES, "all"):
        table.add_column(col, justify="left" if not col else "right")
    for name, acc in rows.items():
        table.add_row(name, *(f"{acc[c]:.2f}" if c in acc else "-" for c in (*SIZES, "all")))
    Console().print(table)
    if args.json:
        report = {"model": args.model or args.vae, "prompts": len(prompts), "rows": rows}
        args.json.write_text(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
