"""The student: the teacher's UNet plus a guidance embedding, read through LCM's consistency parameterization.

f_theta(z_t, t, c, w) = c_skip(t) z_t + c_out(t) x0_pred(z_t, t)  (LCM, Luo et al. 2023, arXiv 2310.04378),
with the guidance scale w fed as `timestep_cond` so one UNet call per step serves any w.
"""

from __future__ import annotations

import torch
from diffusers import UNet2DConditionModel

from scott.sampler import consistency_denoise
from scott.schedule import NoiseSchedule, guidance_scale_embedding, per_sample

COND_PROJ_KEY = "time_embedding.cond_proj.weight"


def build_student(teacher: UNet2DConditionModel, guidance_embed_dim: int) -> UNet2DConditionModel:
    """A trainable copy of the teacher UNet that also takes a guidance embedding, equal to the teacher at init.

    The guidance projection `time_embedding.cond_proj` (a bias-free Linear added to the time embedding)
    is zero-initialised, so student(z, t, c, w) == teacher(z, t, c) for every w at step 0. That holds
    also when the teacher already has a projection: the teacher is run without one (plain CFG), so
    whatever its projection learned is not what the student must start from.
    """
    config = dict(teacher.config)
    dim = config.get("time_cond_proj_dim") or guidance_embed_dim
    config["time_cond_proj_dim"] = int(dim)
    student = UNet2DConditionModel.from_config(config)
    state = {k: v for k, v in teacher.state_dict().items() if k != COND_PROJ_KEY}
    missing, unexpected = student.load_state_dict(state, strict=False)
    if unexpected or set(missing) != {COND_PROJ_KEY}:
        raise RuntimeError(f"teacher and student UNets differ beyond cond_proj: missing {missing}, extra {unexpected}")
    with torch.no_grad():
        student.time_embedding.cond_proj.weight.zero_()
    return student.to(dtype=torch.float32).train().requires_grad_(True)


def guidance_condition(unet: torch.nn.Module, w: torch.Tensor) -> torch.Tensor:
    """The `timestep_cond` of guidance scales w (B,), as the serving pipeline builds it."""
    dim = _config_of(unet).time_cond_proj_dim
    return guidance_scale_embedding(w.cpu(), int(dim)).to(w.device)


def consistency_fn(
    unet: torch.nn.Module,
    schedule: NoiseSchedule,
    z: torch.Tensor,
    t: torch.Tensor,
    text: torch.Tensor,
    w_cond: torch.Tensor,
) -> torch.Tensor:
    """f(z_t, t, c, w): one UNet call turned into the clean estimate with the LCM boundary condition."""
    out = unet(z, t, encoder_hidden_states=text, timestep_cond=w_cond).sample
    return consistency_denoise(schedule, out.to(torch.float32), z.to(torch.float32), t)


def target_fn(
    ema_unet: torch.nn.Module,
    schedule: NoiseSchedule,
    z: torch.Tensor,
    t: torch.Tensor,
    text: torch.Tensor,
    w_cond: torch.Tensor,
) -> torch.Tensor:
    """f_{theta^-}(z, t, c, w), with t < 0 meaning z is already clean: the boundary f(x, 0-) = x.

    The UNet is still called on the whole batch (at t clamped to 0) so shapes stay static; those rows
    are then replaced, never used.
    """
    f = consistency_fn(ema_unet, schedule, z, t.clamp(min=0), text, w_cond)
    clean = per_sample(t < 0, z)
    return torch.where(clean, z.to(torch.float32), f)


def _config_of(unet: torch.nn.Module):
    # DDP and torch.compile wrap the UNet; its config lives on the innermost module.
    while not hasattr(unet, "config") and hasattr(unet, "module"):
        unet = unet.module
    return unet.config
