"""Stage 2: encode N procedural training images once with the trained VAE, and tokenize their captions.

The training kit's LatentCache keeps each image's posterior mean and std (both times the VAE's scaling factor), so
the teacher can train on posterior samples z0 = mean + std * noise, as the decoder was trained, or on the means alone
(TeacherConfig.sample_posterior). Captions follow the data's TRAIN_CAPTIONS policy (60% name every attribute, the
rest about half); the extras hold them as CLIP token ids padded to 77 ("input_ids", the window the served pipeline
uses) and each latent cell's foreground fraction ("foreground", float16).
The stage takes ~2 minutes: an interrupted run redoes it rather than checkpointing inside it.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from diffusers import AutoencoderKL
from rich.progress import Progress
from transformers import CLIPTokenizer

from scott.data.samples import TRAIN_CAPTIONS, sample
from scott.images import images_to_tensor
from scott.recipe.config import RecipeConfig
from scott.recipe.stage import StageDir
from scott.recipe.vae import foreground_mask, vae_dir
from scott.tokenizer import tokenize
from scott.train.latent_cache import LatentCache, encode_posterior
from scott.train.log import console, say

STAGE = "latents"
FILE = "latents.safetensors"


@torch.no_grad()
def encode_images(
    vae: AutoencoderKL, count: int, batch_size: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, list[str]]:
    """(scaled posterior means, scaled stds, foreground fractions per latent cell, captions) of training images
    0 .. count-1."""
    means, stds, foregrounds, captions = [], [], [], []
    with Progress(console=console) as progress:
        task = progress.add_task(STAGE, total=count)
        for start in range(0, count, batch_size):
            # The same items as scott.distill's `procedural:N` data: train split, TRAIN_CAPTIONS, indices 0..N-1.
            samples = [sample("train", i, TRAIN_CAPTIONS) for i in range(start, min(start + batch_size, count))]
            images = images_to_tensor(np.stack([s.image for s in samples]))
            mean, std = encode_posterior(vae, images)
            means.append(mean)
            stds.append(std)
            foregrounds.append(F.adaptive_avg_pool2d(foreground_mask(images), mean.shape[-2:]))
            captions += [s.caption for s in samples]
            progress.update(task, advance=len(samples))
    return torch.cat(means), torch.cat(stds), torch.cat(foregrounds), captions


def latents_file(run_dir: Path) -> Path:
    return Path(run_dir) / STAGE / FILE


def load_latents(run_dir: Path) -> LatentCache:
    return LatentCache.load(latents_file(run_dir))


def run_latents_stage(run_dir: Path, cfg: RecipeConfig, tokenizer: CLIPTokenizer) -> bool:
    vae_state = StageDir(run_dir, "vae", {}).path / "state.json"
    vae_scale = json.loads(vae_state.read_text()).get("scaling_factor") if vae_state.is_file() else None
    # "format": the training kit's LatentCache with token ids and foreground maps (an older cache is redone)
    stage = StageDir(run_dir, STAGE, {**asdict(cfg.latents), "vae_scaling_factor": vae_scale, "format": 2})
    if stage.complete:
        say(STAGE, f"complete, skipping ({stage.path})")
        return True
    vae = AutoencoderKL.from_pretrained(str(vae_dir(run_dir)), local_files_only=True).eval()
    mean, std, foreground, captions = encode_images(vae, cfg.latents.count, cfg.latents.batch_size)
    extras = {"input_ids": tokenize(tokenizer, captions).to(torch.int32), "foreground": foreground.half()}
    LatentCache(mean, std, captions, extras).save(latents_file(run_dir))
    stats = {"count": len(captions), "latent_std": float(mean.std()), "posterior_std_mean": float(std.mean())}
    say(STAGE, ", ".join(f"{k} {v:.4g}" for k, v in stats.items()))
    stage.mark_complete(**stats)
    return True
