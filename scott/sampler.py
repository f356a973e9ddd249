"""The stateless 1–4 step stochastic consistency sampler.

Multistep consistency sampling (LCM, Luo et al. 2023, arXiv 2310.04378) with TCD's strategic
stochastic sampling (Zheng et al. 2024, arXiv 2402.19159): each step predicts x0 with the
consistency function, then re-noises to the next timestep with strength gamma. Unlike
diffusers' LCMScheduler/TCDScheduler it keeps no state, takes one timestep schedule, one
gamma and one seed per sample, so a single call serves any batch of requests and a sample's
result does not depend on what it was batched with.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

from scott.schedule import NoiseSchedule, _per_sample

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
    return _per_sample(c_out, sample) * x0 + _per_sample(c_skip, sample) * sample


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
    a_t = _per_sample(schedule.alpha_bar(t), sample)
    a_s = _per_sample(schedule.alpha_bar(s), sample)
    a_next = _per_sample(schedule.alpha_bar(t_next), sample)
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
