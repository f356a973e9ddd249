"""The teacher's DDIM sampler agrees with diffusers' DDIMScheduler loop, and images depend on their own seed only."""

from __future__ import annotations

import pytest
import torch
from diffusers import DDIMScheduler

from scott.models import PRESETS, build_model
from scott.recipe.ddim import ddim_sample, ddim_timesteps, seeded_noise, teacher_sample
from scott.schedule import NoiseSchedule

CONFIG = PRESETS["tiny"]["scheduler"]


def reference_scheduler(steps: int) -> DDIMScheduler:
    scheduler = DDIMScheduler.from_config(
        {k: v for k, v in CONFIG.items() if not k.startswith("_")},
        timestep_spacing="trailing",
        clip_sample=False,
        set_alpha_to_one=True,
    )
    scheduler.set_timesteps(steps)
    return scheduler


class ToyModel(torch.nn.Module):
    """A fixed nonlinear function of (z, t) standing in for a UNet: the samplers only see its outputs."""

    def __init__(self) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(0)
        self.mix = torch.randn(4, 4, generator=g) / 2

    def forward(self, z: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        scale = (t.float() / 1000).reshape(-1, 1, 1, 1)
        return torch.tanh(torch.einsum("ij,bjhw->bihw", self.mix, z)) * (1 + scale) - 0.3 * scale * z


@pytest.mark.parametrize("steps", [1, 2, 4, 25])
def test_timesteps_match_diffusers_trailing(steps: int) -> None:
    ours = ddim_timesteps(NoiseSchedule.from_config(CONFIG), steps)
    assert ours.tolist() == reference_scheduler(steps).timesteps.tolist()
    assert int(ours[0]) == 999  # zero-terminal-SNR models start from pure noise


@pytest.mark.parametrize("steps", [1, 2, 4, 25])
def test_ddim_matches_diffusers_loop(steps: int) -> None:
    model, schedule = ToyModel(), NoiseSchedule.from_config(CONFIG)
    noise = torch.randn(3, 4, 8, 8, generator=torch.Generator().manual_seed(steps))
    ours = ddim_sample(model, schedule, noise, ddim_timesteps(schedule, steps))

    scheduler = reference_scheduler(steps)
    z = noise.clone()
    for t in scheduler.timesteps:
        z = scheduler.step(model(z, t.expand(3)), t, z, eta=0.0).prev_sample
    torch.testing.assert_close(ours, z, rtol=1e-5, atol=1e-5)


def test_teacher_sample_is_per_seed_and_guided() -> None:
    previous = torch.get_num_threads()
    torch.set_num_threads(1)  # a busy 2-core machine runs this far faster on one thread
    try:
        _check_teacher_sample()
    finally:
        torch.set_num_threads(previous)


def _check_teacher_sample() -> None:
    torch.manual_seed(0)
    bundle = build_model("tiny", seed=0)
    bundle.unet = type(bundle.unet).from_config({**bundle.unet.config, "time_cond_proj_dim": None}).eval()
    prompts = ["a red circle", "a blue star on a white background", "a small green cross"]
    batch = teacher_sample(bundle, prompts, [5, 6, 7], steps=2, guidance=4.0)
    alone = teacher_sample(bundle, prompts[1:2], [6], steps=2, guidance=4.0)
    assert batch.shape == (3, 64, 64, 3) and batch.dtype.name == "uint8"
    assert abs(batch[1:2].astype(int) - alone.astype(int)).max() <= 1  # batch-size invariance up to rounding
    unguided = teacher_sample(bundle, prompts[1:2], [6], steps=2, guidance=1.0)
    assert not (unguided == alone).all()
    assert torch.equal(seeded_noise([6], (4, 8, 8))[0], seeded_noise([5, 6], (4, 8, 8))[1])
