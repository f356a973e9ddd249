"""Stage 2: encode N procedural training images once with the trained VAE, and tokenize their captions.

The cache keeps each image's posterior mean and std (both times the VAE's scaling factor), so the teacher can
train on posterior samples z0 = mean + std * noise, as the decoder was trained, or on the means alone
(TeacherConfig.sample_posterior). Captions follow the data's TRAIN_CAPTIONS policy (60% name every attribute,
the rest about half), stored as CLIP token ids padded to 77, the window the served pipeline uses.
The stage takes ~2 minutes: an interrupted run redoes it rather than checkpointing inside it.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from diffusers import AutoencoderKL
from rich.progress import Progress
from safetensors.torch import load_file, save_file
from transformers import CLIPTokenizer

from scott.data.samples import TRAIN_CAPTIONS, sample
from scott.images import images_to_tensor
from scott.recipe.config import RecipeConfig
from scott.recipe.stage import StageDir
from scott.recipe.vae import foreground_mask, vae_dir
from scott.tokenizer import tokenize
from scott.train.log import console, say

STAGE = "latents"
FILE = "latents.safetensors"


@dataclass
class LatentSet:
    mean: torch.Tensor  # float32 (N, C, h, w), scaled
    std: torch.Tensor  # float32 (N, C, h, w), scaled
    input_ids: torch.Tensor  # int64 (N, 77)
    captions: list[str]
    # float32 (N, 1, h, w): the fraction of each latent cell's pixels that are not background (the shape)
    foreground: torch.Tensor

    def __len__(self) -> int:
        return int(self.mean.shape[0])


@torch.no_grad()
def encode_images(
    vae: AutoencoderKL, count: int, batch_size: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, list[str]]:
    """(scaled posterior means, scaled stds, foreground fractions per latent cell, captions) of training images
    0 .. count-1."""
    scale = float(vae.config.scaling_factor)
    means, stds, foregrounds, captions = [], [], [], []
    with Progress(console=console) as progress:
        task = progress.add_task(STAGE, total=count)
        for start in range(0, count, batch_size):
            # The same items as scott.distill's `procedural:N` data: train split, TRAIN_CAPTIONS, indices 0..N-1.
            samples = [sample("train", i, TRAIN_CAPTIONS) for i in range(start, min(start + batch_size, count))]
            images = images_to_tensor(np.stack([s.image for s in samples]))
            dist = vae.encode(images).latent_dist
            means.append(dist.mean * scale)
            stds.append(dist.std * scale)
            foregrounds.append(F.adaptive_avg_pool2d(foreground_mask(images), dist.mean.shape[-2:]))
            captions += [s.caption for s in samples]
            progress.update(task, advance=len(samples))
    return torch.cat(means), torch.cat(stds), torch.cat(foregrounds), captions


def latents_file(run_dir: Path) -> Path:
    return Path(run_dir) / STAGE / FILE


def load_latents(run_dir: Path) -> LatentSet:
    tensors = load_file(str(latents_file(run_dir)))
    captions = json.loads((Path(run_dir) / STAGE / "captions.json").read_text())
    foreground = tensors["foreground"].float()
    return LatentSet(tensors["mean"], tensors["std"], tensors["input_ids"].long(), captions, foreground)


def run_latents_stage(run_dir: Path, cfg: RecipeConfig, tokenizer: CLIPTokenizer) -> bool:
    vae_state = StageDir(run_dir, "vae", {}).path / "state.json"
    vae_scale = json.loads(vae_state.read_text()).get("scaling_factor") if vae_state.is_file() else None
    # "foreground": the cache format with foreground maps (an older cache lacks them and is redone)
    stage = StageDir(run_dir, STAGE, {**asdict(cfg.latents), "vae_scaling_factor": vae_scale, "foreground": True})
    if stage.complete:
        say(STAGE, f"complete, skipping ({stage.path})")
        return True
    vae = AutoencoderKL.from_pretrained(str(vae_dir(run_dir)), local_files_only=True).eval()
    mean, std, foreground, captions = encode_images(vae, cfg.latents.count, cfg.latents.batch_size)
    ids = tokenize(tokenizer, captions).to(torch.int32)
    tensors = {"mean": mean, "std": std, "input_ids": ids, "foreground": foreground.half()}
    save_file({k: v.contiguous() for k, v in tensors.items()}, str(latents_file(run_dir)))
    (stage.path / "captions.json").write_text(json.dumps(captions))
    stats = {"count": len(captions), "latent_std": float(mean.std()), "posterior_std_mean": float(std.mean())}
    say(STAGE, ", ".join(f"{k} {v:.4g}" for k, v in stats.items()))
    stage.mark_complete(**stats)
    return True
