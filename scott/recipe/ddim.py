"""Multi-step DDIM (Song et al. 2021, arXiv 2010.02502, eta = 0) with classifier-free guidance, for the teacher.

The schedule math comes from scott.schedule (split_prediction, alpha_bar). Timesteps are "trailing"
(999, 959, ... for 25 steps), the spacing zero-terminal-SNR models need (Lin et al. 2023, arXiv 2305.08891):
the first step starts at t = 999, where the model has seen pure noise. diffusers' DDIMScheduler with
timestep_spacing="trailing", clip_sample=False, set_alpha_to_one=True is the reference implementation
(tests/test_recipe_ddim.py); it steps to t - T // n, which is the next timestep whenever n divides T.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch

from scott.models import ModelBundle
from scott.recipe.latents import tokenize
from scott.schedule import NoiseSchedule

ModelFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]  # (z_t, t (B,)) -> model output


def ddim_timesteps(schedule: NoiseSchedule, steps: int) -> torch.Tensor:
    """Trailing timesteps, descending: round(arange(T, 0, -T / steps)) - 1."""
    T = schedule.num_train_timesteps
    if not 1 <= steps <= T:
        raise ValueError(f"steps must be in [1, {T}], got {steps}")
    return torch.from_numpy(np.round(np.arange(T, 0, -T / steps)).astype(np.int64) - 1)


@torch.no_grad()
def ddim_sample(model: ModelFn, schedule: NoiseSchedule, noise: torch.Tensor, timesteps: torch.Tensor) -> torch.Tensor:
    """Deterministic DDIM from noise at timesteps[0] down to the clean sample."""
    z = noise
    for i, t in enumerate(timesteps.tolist()):
        t_now = torch.full((z.shape[0],), t, dtype=torch.long, device=z.device)
        x0, eps = schedule.split_prediction(model(z, t_now), z, t_now)
        t_next = int(timesteps[i + 1]) if i + 1 < len(timesteps) else -1  # -1: alpha_bar = 1, the clean sample
        a_next = schedule.alpha_bar(torch.tensor(t_next, device=z.device))
        z = a_next.sqrt() * x0 + (1 - a_next).sqrt() * eps
    return z


def cfg_model(bundle: ModelBundle, text: torch.Tensor, uncond: torch.Tensor, guidance: float) -> ModelFn:
    """u + w (c - u), both halves in one UNet call."""

    def model(z: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        if guidance == 1.0:
            return bundle.unet(z, t, text).sample
        out = bundle.unet(torch.cat([z, z]), torch.cat([t, t]), torch.cat([uncond.expand_as(text), text])).sample
        out_uncond, out_text = out.chunk(2)
        return out_uncond + guidance * (out_text - out_uncond)

    return model


def seeded_noise(seeds: Sequence[int], shape: tuple[int, ...]) -> torch.Tensor:
    """One generator per seed: an image depends on its own seed only, not on its batch."""
    return torch.stack([torch.randn(shape, generator=torch.Generator().manual_seed(int(s))) for s in seeds])


@torch.no_grad()
def encode_prompts(bundle: ModelBundle, prompts: Sequence[str]) -> torch.Tensor:
    return bundle.text_encoder(tokenize(bundle.tokenizer, list(prompts)).to(bundle.text_encoder.device))[0]


@torch.no_grad()
def decode_latents(bundle: ModelBundle, latents: torch.Tensor) -> np.ndarray:
    """Scaled latents -> uint8 (B, H, W, 3)."""
    images = bundle.vae.decode(latents / float(bundle.vae.config.scaling_factor)).sample.clamp(-1, 1)
    return ((images + 1) * 127.5).round().to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()


@torch.no_grad()
def teacher_sample(
    bundle: ModelBundle, prompts: Sequence[str], seeds: Sequence[int], steps: int, guidance: float
) -> np.ndarray:
    """uint8 images (B, H, W, 3) from the teacher: DDIM at `steps` trailing timesteps with CFG at `guidance`."""
    if len(prompts) != len(seeds):
        raise ValueError(f"need one seed per prompt, got {len(prompts)} prompts and {len(seeds)} seeds")
    text = encode_prompts(bundle, prompts)
    uncond = encode_prompts(bundle, [""])
    side = int(bundle.unet.config.sample_size)
    noise = seeded_noise(seeds, (int(bundle.unet.config.in_channels), side, side)).to(bundle.unet.device)
    schedule = bundle.schedule
    latents = ddim_sample(cfg_model(bundle, text, uncond, guidance), schedule, noise, ddim_timesteps(schedule, steps))
    return decode_latents(bundle, latents)
