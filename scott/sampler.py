"""Every sampler, over one model function: the few-step consistency sampler and the teacher's DDIM-eta solver.

1. Multistep consistency sampling (LCM, Luo et al. 2023, arXiv 2310.04378) with TCD's strategic
   stochastic sampling (Zheng et al. 2024, arXiv 2402.19159): each step predicts x0 with the
   consistency function, then re-noises to the next timestep with strength gamma. Unlike diffusers'
   LCMScheduler/TCDScheduler it keeps no state and takes one timestep schedule, one gamma and one seed
   per sample, so a single call serves any batch and a sample does not depend on its batch mates.
2. DDIM with eta (Song et al. 2021, arXiv 2010.02502, eq. 12/16): eta = 0 is the deterministic ODE step
   (the teacher's sampler, vanilla CD's solver), eta = 1 the DDPM ancestral step; SCott's teacher
   solver (arXiv 2403.01505) is a few of these steps with eta between.
3. Classifier-free guidance (Ho & Salimans 2022, arXiv 2207.12598) wraps any conditional model into
   the model function both samplers take.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import torch

from scott.schedule import NoiseSchedule, per_sample

# (latents (B,C,H,W) float32, timesteps (B,) long) -> raw model output (B,C,H,W) float32
ModelFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def sample_generators(seeds: Sequence[int]) -> list[torch.Generator]:
    """One CPU generator per sample: noise is drawn on the CPU so results do not depend on the device."""
    return [torch.Generator(device="cpu").manual_seed(int(seed)) for seed in seeds]


def draw_noise(
    generators: Sequence[torch.Generator],
    latent_shape: Sequence[int],
    num_steps: int,
    device: torch.device | str = "cpu",
) -> torch.Tensor:
    """All the noise of a num_steps run, (B, num_steps, *latent_shape): sample b from generators[b] alone.

    Drawn one latent at a time, in the order diffusers' pipelines and schedulers draw it
    (starting latents, then one per re-noising step), so the same seed gives the same numbers.
    """
    noise = torch.stack(
        [
            torch.stack([torch.randn(tuple(latent_shape), generator=g, dtype=torch.float32) for _ in range(num_steps)])
            for g in generators
        ]
    )
    return noise.to(device, non_blocking=True)


def consistency_denoise(
    schedule: NoiseSchedule,
    model_output: torch.Tensor,
    sample: torch.Tensor,
    t: torch.Tensor,
    boundary_condition: bool = True,
) -> torch.Tensor:
    """The consistency function f(z_t, t) = c_skip(t) z_t + c_out(t) x0_pred(z_t, t) (LCM's parameterization)."""
    x0, _ = schedule.split_prediction(model_output, sample, t)
    if not boundary_condition:
        return x0
    c_skip, c_out = schedule.boundary_scalings(t)
    return per_sample(c_out, sample) * x0 + per_sample(c_skip, sample) * sample


def renoise(
    schedule: NoiseSchedule,
    x0: torch.Tensor,
    sample: torch.Tensor,
    t: torch.Tensor,
    t_next: torch.Tensor,
    gamma: torch.Tensor,
    noise: torch.Tensor,
) -> torch.Tensor:
    """TCD's strategic stochastic step from z_t with prediction x0 to z_{t_next}.

    1. s = floor((1 - gamma) * t_next); gamma = 1 goes all the way to the clean x0 (LCM).
    2. Move along the predicted trajectory: z_s = sqrt(a_s) x0 + sqrt(1 - a_s) eps_hat,
       with eps_hat the noise direction implied by (z_t, x0).
    3. Add fresh noise from s to t_next: z = sqrt(a_next / a_s) z_s + sqrt(1 - a_next / a_s) noise.
    """
    # 1. the intermediate timestep s (per sample); -1 stands for the clean sample
    s = torch.floor((1.0 - gamma.to(torch.float64)) * t_next.to(torch.float64)).long()
    s = torch.where(gamma >= 1.0, torch.full_like(s, -1), s)
    a_t = per_sample(schedule.alpha_bar(t), sample)
    a_s = per_sample(schedule.alpha_bar(s), sample)
    a_next = per_sample(schedule.alpha_bar(t_next), sample)
    # 2. deterministic move to s along the trajectory through z_t and x0
    eps_hat = (sample - a_t.sqrt() * x0) / (1.0 - a_t).sqrt()
    z_s = a_s.sqrt() * x0 + (1.0 - a_s).sqrt() * eps_hat
    # 3. forward-noise from s to t_next
    ratio = a_next / a_s
    return ratio.sqrt() * z_s + (1.0 - ratio).clamp(min=0.0).sqrt() * noise


def sample_consistency(
    model: ModelFn,
    schedule: NoiseSchedule,
    timesteps: torch.Tensor,
    noise: torch.Tensor,
    gamma: torch.Tensor,
    boundary_condition: bool = True,
    on_step: Callable[[int, torch.Tensor], None] | None = None,
) -> torch.Tensor:
    """Multistep stochastic consistency sampling; returns the predicted clean latents.

    timesteps: (B, S) long, descending per row. noise: (B, S, C, H, W), all the noise the run uses,
    drawn up front (one transfer, no host work between UNet calls): [:, 0] is the starting latent at
    timesteps[:, 0], [:, i] the fresh noise of re-noising step i. gamma: (B,) in [0, 1].
    """
    batch, num_steps = timesteps.shape if timesteps.dim() == 2 else (-1, -1)
    if num_steps < 1 or batch != noise.shape[0]:
        raise ValueError(f"timesteps must be (batch, steps) for batch {noise.shape[0]}, got {tuple(timesteps.shape)}")
    if noise.dim() != 5 or noise.shape[1] != num_steps:
        raise ValueError(f"noise must be (batch, {num_steps}, C, H, W), got {tuple(noise.shape)}")
    if bool(((gamma < 0) | (gamma > 1)).any()):
        raise ValueError("gamma must be in [0, 1]")
    device = noise.device
    timesteps, gamma = timesteps.to(device), gamma.to(device)
    z = noise[:, 0].to(torch.float32)
    for i in range(num_steps):
        t = timesteps[:, i]
        if on_step is not None:
            on_step(i, z)
        x0 = consistency_denoise(schedule, model(z, t).to(torch.float32), z, t, boundary_condition)
        if i == num_steps - 1:
            return x0
        z = renoise(schedule, x0, z, t, timesteps[:, i + 1], gamma, noise[:, i + 1])
    raise AssertionError("unreachable: timesteps has at least one step")


# -- DDIM-eta -----------------------------------------------------------------------------------------


def ddim_timesteps(schedule: NoiseSchedule, steps: int) -> torch.Tensor:
    """Trailing timesteps, descending: round(arange(T, 0, -T / steps)) - 1 (999, 959, ... for 25 steps).

    The spacing zero-terminal-SNR models need (Lin et al. 2023, arXiv 2305.08891): the first step starts
    at t = 999, where the model has seen pure noise. diffusers' DDIMScheduler with timestep_spacing="trailing"
    is the reference; it steps to t - T // n, which is the next timestep whenever n divides T.
    """
    T = schedule.num_train_timesteps
    if not 1 <= steps <= T:
        raise ValueError(f"steps must be in [1, {T}], got {steps}")
    return torch.from_numpy(np.round(np.arange(T, 0, -T / steps)).astype(np.int64) - 1)


def substep_timesteps(t_n: torch.Tensor, skip: int, substeps: int) -> torch.Tensor:
    """(B, h + 1) integer timesteps t_n = s_0 > s_1 > ... > s_h = t_n - skip; below 0 clamps to -1 (clean)."""
    offsets = torch.round(torch.arange(substeps + 1, dtype=torch.float64) * skip / substeps).long()
    return (t_n[:, None] - offsets.to(t_n.device)[None, :]).clamp(min=-1)


def ddim_eta_step(
    schedule: NoiseSchedule,
    model_output: torch.Tensor,
    z: torch.Tensor,
    t: torch.Tensor,
    t_next: torch.Tensor,
    eta: float | torch.Tensor,
    noise: torch.Tensor | None,
) -> torch.Tensor:
    """One DDIM-eta step from z_t to z_{t_next} (t_next < t; t_next = -1 is the clean sample); eta is one value or
    one per sample (B,).

    1. (x0, eps) from the model output under the schedule's prediction type (v/eps/sample, zero-SNR safe
       for v and sample: at alpha_bar = 0, x0 = -v and eps = z_t).
    2. sigma = eta * sqrt((1 - a_next) / (1 - a_t)) * sqrt(1 - a_t / a_next).
    3. z_next = sqrt(a_next) x0 + sqrt(1 - a_next - sigma^2) eps + sigma * noise (no noise needed at eta = 0).
    """
    x0, eps = schedule.split_prediction(model_output, z, t)
    a_t = per_sample(schedule.alpha_bar(t), z)
    a_next = per_sample(schedule.alpha_bar(t_next), z)
    # 1 - a_t > 0 always: t >= 0 on a DDPM schedule has some noise, so the ratio is finite.
    variance = (1.0 - a_next) / (1.0 - a_t) * (1.0 - a_t / a_next)
    strength = per_sample(eta, z) if isinstance(eta, torch.Tensor) else eta
    sigma = strength * variance.clamp(min=0.0).sqrt()
    direction = (1.0 - a_next - sigma**2).clamp(min=0.0).sqrt()
    z_next = a_next.sqrt() * x0 + direction * eps
    if not isinstance(eta, torch.Tensor) and eta == 0:
        return z_next
    if noise is None:
        raise ValueError("a DDIM step with eta > 0 needs noise")
    return z_next + sigma * noise


def solve(
    model: ModelFn,
    schedule: NoiseSchedule,
    z: torch.Tensor,
    timesteps: torch.Tensor,
    eta: float | torch.Tensor,
    noise: torch.Tensor | None,
) -> torch.Tensor:
    """DDIM-eta along per-sample timesteps (B, n + 1); noise (B, n, C, H, W) is each step's fresh noise; eta is one
    value or one per sample (B,).

    Rows whose step does not move (both ends clamped to the clean -1) keep their value: the
    model is never asked about t < 0.
    """
    z = z.to(torch.float32)
    for j in range(timesteps.shape[1] - 1):
        t, t_next = timesteps[:, j], timesteps[:, j + 1]
        moving, t_model = per_sample(t_next < t, z), t.clamp(min=0)
        fresh = None if noise is None else noise[:, j]
        stepped = ddim_eta_step(schedule, model(z, t_model), z, t_model, t_next, eta, fresh)
        z = torch.where(moving, stepped, z)
    return z


# -- classifier-free guidance ---------------------------------------------------------------------------

# (latents, timesteps, text states) -> raw model output: a conditional model before guidance
ConditionalFn = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]


def classifier_free_guidance(
    predict: ConditionalFn, text: torch.Tensor, uncond: torch.Tensor, w: torch.Tensor
) -> ModelFn:
    """out_u + w (out_c - out_u) at per-sample scales w (B,), both halves in one batched call; w = 1 is one call."""
    if bool((w == 1.0).all()):
        return lambda z, t: predict(z, t, text).to(torch.float32)
    context = torch.cat([uncond.expand_as(text), text])
    w4 = w.to(torch.float32).reshape(-1, 1, 1, 1)

    def guided(z: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        out_u, out_c = predict(torch.cat([z, z]), torch.cat([t, t]), context).to(torch.float32).chunk(2)
        return out_u + w4 * (out_c - out_u)

    return guided


# -- the samplers a pipeline runs -----------------------------------------------------------------------


class Sampler(Protocol):
    """What a pipeline needs of a sampler: its timesteps, how much noise it draws, and the run itself."""

    max_steps: int

    def timesteps(self, schedule: NoiseSchedule, steps: int) -> torch.Tensor:
        """(steps,) long, descending."""
        ...

    def noise_draws(self, steps: int) -> int:
        """Latent-shaped noise draws per sample: the starting latent, then each step's fresh noise."""
        ...

    def sample(
        self, model: ModelFn, schedule: NoiseSchedule, timesteps: torch.Tensor, noise: torch.Tensor, gamma: torch.Tensor
    ) -> torch.Tensor:
        """timesteps (B, S), noise (B, noise_draws, C, H, W), gamma (B,) -> clean latents (B, C, H, W)."""
        ...


@dataclass(frozen=True)
class ConsistencySampler:
    """The served 1-4 step stochastic consistency sampler on the training grid (sample_consistency)."""

    max_steps: int = 4

    def timesteps(self, schedule: NoiseSchedule, steps: int) -> torch.Tensor:
        return schedule.inference_timesteps(steps)

    def noise_draws(self, steps: int) -> int:
        return steps

    def sample(
        self, model: ModelFn, schedule: NoiseSchedule, timesteps: torch.Tensor, noise: torch.Tensor, gamma: torch.Tensor
    ) -> torch.Tensor:
        return sample_consistency(model, schedule, timesteps, noise, gamma)


@dataclass(frozen=True)
class DDIMSampler:
    """A teacher's many-step DDIM-eta sampler at trailing timesteps; per-request gamma does not apply."""

    eta: float = 0.0
    max_steps: int = 1000

    def timesteps(self, schedule: NoiseSchedule, steps: int) -> torch.Tensor:
        return ddim_timesteps(schedule, steps)

    def noise_draws(self, steps: int) -> int:
        return 1 + steps if self.eta > 0 else 1

    def sample(
        self, model: ModelFn, schedule: NoiseSchedule, timesteps: torch.Tensor, noise: torch.Tensor, gamma: torch.Tensor
    ) -> torch.Tensor:
        clean = torch.full_like(timesteps[:, :1], -1)  # the last step lands on the clean sample
        path = torch.cat([timesteps.to(noise.device), clean.to(noise.device)], dim=1)
        fresh = noise[:, 1:] if self.eta > 0 else None
        return solve(model, schedule, noise[:, 0], path, self.eta, fresh)
