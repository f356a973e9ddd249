"""The noise schedule: alphas_cumprod, timestep grids, and the consistency boundary condition.

This is the one copy of the schedule math. The sampler, the pipeline and the distillation
trainer all read it from here, so training and serving never drift apart.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

import torch

PredictionType = Literal["epsilon", "v_prediction", "sample"]
PREDICTION_TYPES: tuple[str, ...] = ("epsilon", "v_prediction", "sample")


def rescale_zero_terminal_snr(betas: torch.Tensor) -> torch.Tensor:
    """Rescale betas so the last timestep has zero SNR (Lin et al. 2023, arXiv 2305.08891, Alg. 1)."""
    alphas_bar_sqrt = torch.cumprod(1.0 - betas, dim=0).sqrt()
    first, last = alphas_bar_sqrt[0].clone(), alphas_bar_sqrt[-1].clone()
    # Same operation order as diffusers, so the float32 tables are bit-identical.
    alphas_bar_sqrt = (alphas_bar_sqrt - last) * (first / (first - last))
    alphas_bar = alphas_bar_sqrt**2
    alphas = torch.cat([alphas_bar[:1], alphas_bar[1:] / alphas_bar[:-1]])
    return 1.0 - alphas


def make_betas(num_train_timesteps: int, beta_start: float, beta_end: float, beta_schedule: str) -> torch.Tensor:
    """DDPM betas in float32, computed exactly as diffusers' schedulers compute them."""
    if beta_schedule == "linear":
        return torch.linspace(beta_start, beta_end, num_train_timesteps, dtype=torch.float32)
    if beta_schedule == "scaled_linear":
        return torch.linspace(beta_start**0.5, beta_end**0.5, num_train_timesteps, dtype=torch.float32) ** 2
    raise ValueError(f"beta_schedule {beta_schedule!r} is not supported; use 'linear' or 'scaled_linear'")


@dataclass(frozen=True)
class NoiseSchedule:
    """A discrete DDPM schedule plus the LCM consistency parameterization of the student."""

    alphas_cumprod: torch.Tensor  # (num_train_timesteps,), float32
    prediction_type: PredictionType = "epsilon"
    original_inference_steps: int = 50  # the distillation grid the few-step timesteps come from
    timestep_scaling: float = 10.0  # LCM boundary condition: c_skip/c_out at t * scaling
    sigma_data: float = 0.5

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> NoiseSchedule:
        """Build from a diffusers scheduler config (any of DDPM/DDIM/PNDM/LCM/TCD/Euler)."""
        if config.get("trained_betas") is not None:
            betas = torch.tensor(config["trained_betas"], dtype=torch.float32)
        else:
            betas = make_betas(
                int(config.get("num_train_timesteps", 1000)),
                float(config.get("beta_start", 0.00085)),
                float(config.get("beta_end", 0.012)),
                str(config.get("beta_schedule", "scaled_linear")),
            )
        if config.get("rescale_betas_zero_snr", False):
            betas = rescale_zero_terminal_snr(betas)
        prediction_type = str(config.get("prediction_type", "epsilon"))
        if prediction_type not in PREDICTION_TYPES:
            raise ValueError(f"prediction_type {prediction_type!r} is not one of {PREDICTION_TYPES}")
        return cls(
            alphas_cumprod=torch.cumprod(1.0 - betas, dim=0),
            prediction_type=prediction_type,  # type: ignore[arg-type]
            original_inference_steps=int(config.get("original_inference_steps", 50)),
            timestep_scaling=float(config.get("timestep_scaling", 10.0)),
        )

    @property
    def num_train_timesteps(self) -> int:
        return int(self.alphas_cumprod.shape[0])

    # -- timestep grids -----------------------------------------------------------------------

    def training_grid(self) -> torch.Tensor:
        """The distillation grid, ascending: t = k, 2k, ..., T with k = T // original_inference_steps, minus 1."""
        k = self.num_train_timesteps // self.original_inference_steps
        return torch.arange(1, self.original_inference_steps + 1, dtype=torch.long) * k - 1

    def inference_timesteps(self, num_steps: int) -> torch.Tensor:
        """Few-step timesteps taken evenly from the training grid, as diffusers' LCMScheduler does.

        For 4 steps on the 50-step grid of a 1000-step schedule: 999, 759, 499, 259.
        """
        grid = self.training_grid().flip(0)
        if not 1 <= num_steps <= grid.numel():
            raise ValueError(f"num_steps must be in [1, {grid.numel()}], got {num_steps}")
        index = torch.floor(torch.arange(num_steps, dtype=torch.float64) * grid.numel() / num_steps).long()
        return grid[index]

    # -- per-timestep coefficients --------------------------------------------------------------

    def alpha_bar(self, t: torch.Tensor) -> torch.Tensor:
        """alphas_cumprod at integer timesteps t (any shape); t < 0 means the clean sample (1.0)."""
        table = self.alphas_cumprod.to(t.device)
        return torch.where(t >= 0, table[t.clamp(min=0)], torch.ones((), device=t.device))

    def boundary_scalings(self, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """LCM's c_skip(t), c_out(t): f = c_skip * z_t + c_out * x0_pred, with f = z at t = 0."""
        scaled = t.to(torch.float32) * self.timestep_scaling
        c_skip = self.sigma_data**2 / (scaled**2 + self.sigma_data**2)
        c_out = scaled / (scaled**2 + self.sigma_data**2) ** 0.5
        return c_skip, c_out

    # -- conversions between what a model predicts and (x0, eps) --------------------------------

    def split_prediction(
        self, model_output: torch.Tensor, sample: torch.Tensor, t: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Turn a model output at timesteps t (one per sample) into (x0, eps) under the prediction type."""
        a = per_sample(self.alpha_bar(t), sample)
        sqrt_a, sqrt_b = a.sqrt(), (1.0 - a).sqrt()
        if self.prediction_type == "epsilon":
            x0 = (sample - sqrt_b * model_output) / sqrt_a
            return x0, model_output
        if self.prediction_type == "v_prediction":
            return sqrt_a * sample - sqrt_b * model_output, sqrt_a * model_output + sqrt_b * sample
        return model_output, (sample - sqrt_a * model_output) / sqrt_b

    def target_from(self, x0: torch.Tensor, eps: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """What a model of this prediction type should output for (x0, eps) at t (for training)."""
        if self.prediction_type == "epsilon":
            return eps
        if self.prediction_type == "sample":
            return x0
        a = per_sample(self.alpha_bar(t), x0)
        return a.sqrt() * eps - (1.0 - a).sqrt() * x0

    def add_noise(self, x0: torch.Tensor, noise: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """Forward diffusion q(z_t | x0) at timesteps t (one per sample)."""
        a = per_sample(self.alpha_bar(t), x0)
        return a.sqrt() * x0 + (1.0 - a).sqrt() * noise


def per_sample(values: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """Broadcast a (B,) tensor of per-sample scalars (or flags) over a (B, ...) tensor; floats take like's dtype."""
    if values.is_floating_point():
        values = values.to(like.dtype)
    return values.reshape(-1, *([1] * (like.dim() - 1)))


def guidance_scale_embedding(w: torch.Tensor, dim: int) -> torch.Tensor:
    """Sinusoidal embedding of guidance scales w (B,) -> (B, dim), as LCM's pipeline feeds `timestep_cond`.

    Like diffusers' LatentConsistencyModelPipeline, the UNet sees w - 1 scaled by 1000.
    """
    w = (w.to(torch.float64) - 1.0).to(torch.float32) * 1000.0
    half = dim // 2
    freqs = torch.exp(torch.arange(half, dtype=torch.float32) * -(torch.log(torch.tensor(10000.0)) / (half - 1)))
    emb = w[:, None] * freqs[None, :]
    emb = torch.cat([torch.sin(emb), torch.cos(emb)], dim=1)
    if dim % 2 == 1:
        emb = torch.nn.functional.pad(emb, (0, 1))
    return emb
