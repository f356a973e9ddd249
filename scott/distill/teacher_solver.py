"""The teacher's stochastic solver: t_n -> t_m in h DDIM-eta sub-steps with classifier-free guidance.

SCott (arXiv 2403.01505) replaces the ODE solver of consistency distillation with an SDE solver whose
noise strength is controlled. Each sub-step here is a DDIM step with eta (Song et al. 2021,
arXiv 2010.02502, eq. 12/16): eta = 0 is the deterministic DDIM ODE step (vanilla CD, LCM's solver),
eta = 1 is the DDPM ancestral step, values between inject proportionally less fresh noise.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from scott.schedule import NoiseSchedule, _per_sample

# (latents (B,C,H,W), timesteps (B,) long) -> guided raw model output (B,C,H,W) float32
GuidedModel = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


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
    eta: float,
    noise: torch.Tensor,
) -> torch.Tensor:
    """One DDIM-eta step from z_t to z_{t_next} (t_next < t; t_next = -1 is the clean sample).

    1. (x0, eps) from the model output under the schedule's prediction type (v/eps/sample, zero-SNR safe
       for v and sample: at alpha_bar = 0, x0 = -v and eps = z_t).
    2. sigma = eta * sqrt((1 - a_next) / (1 - a_t)) * sqrt(1 - a_t / a_next).
    3. z_next = sqrt(a_next) x0 + sqrt(1 - a_next - sigma^2) eps + sigma * noise.
    """
    x0, eps = schedule.split_prediction(model_output, z, t)
    a_t = _per_sample(schedule.alpha_bar(t), z)
    a_next = _per_sample(schedule.alpha_bar(t_next), z)
    # 1 - a_t > 0 always: t >= 0 on a DDPM schedule has some noise, so the ratio is finite.
    variance = (1.0 - a_next) / (1.0 - a_t) * (1.0 - a_t / a_next)
    sigma = eta * variance.clamp(min=0.0).sqrt()
    direction = (1.0 - a_next - sigma**2).clamp(min=0.0).sqrt()
    return a_next.sqrt() * x0 + direction * eps + sigma * noise


def solve(
    model: GuidedModel,
    schedule: NoiseSchedule,
    z: torch.Tensor,
    timesteps: torch.Tensor,
    eta: float,
    noise: torch.Tensor,
) -> torch.Tensor:
    """Run the solver along per-sample timesteps (B, h + 1); noise (B, h, C, H, W) is each sub-step's fresh noise.

    Rows whose sub-step does not move (both ends clamped to the clean -1) keep their value: the
    teacher is never asked about t < 0.
    """
    z = z.to(torch.float32)
    for j in range(timesteps.shape[1] - 1):
        t, t_next = timesteps[:, j], timesteps[:, j + 1]
        moving = t_next < t
        out = model(z, t.clamp(min=0))
        stepped = ddim_eta_step(schedule, out, z, t.clamp(min=0), t_next, eta, noise[:, j])
        z = torch.where(moving.reshape(-1, *([1] * (z.dim() - 1))), stepped, z)
    return z


def cfg_model(
    unet: torch.nn.Module, text: torch.Tensor, uncond: torch.Tensor, w: torch.Tensor, dtype: torch.dtype
) -> GuidedModel:
    """The teacher with classifier-free guidance at per-sample scale w: out_u + w (out_c - out_u), one batched call."""
    w4 = w.reshape(-1, 1, 1, 1).to(torch.float32)
    context = torch.cat([uncond.expand_as(text), text]).to(dtype)

    def guided(z: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        out = unet(torch.cat([z, z]).to(dtype), torch.cat([t, t]), encoder_hidden_states=context).sample
        out_u, out_c = out.to(torch.float32).chunk(2)
        return out_u + w4 * (out_c - out_u)

    return guided
