"""The DDIM-eta sampler (the teacher's sampler and SCott's solver) and classifier-free guidance.

Parity with diffusers' DDIMScheduler (one step at any eta, and the whole trailing-timestep loop), the solver's
clean boundary, and the teacher served by the same pipeline as the student.
"""

from __future__ import annotations

import pytest
import torch
from diffusers import DDIMScheduler

from scott.eval.generators import teacher_generate_fn
from scott.models import PRESETS, build_model
from scott.sampler import DDIMSampler, classifier_free_guidance, ddim_eta_step, ddim_timesteps, solve, substep_timesteps
from scott.schedule import NoiseSchedule

ZERO_SNR_V = dict(PRESETS["tiny"]["scheduler"])  # v-prediction, zero terminal SNR
SD15_EPS = dict(PRESETS["sd15"]["scheduler"])  # epsilon, scaled_linear


@pytest.mark.parametrize("scheduler_config", [ZERO_SNR_V, SD15_EPS], ids=["v-zero-snr", "eps-sd15"])
@pytest.mark.parametrize("eta", [0.0, 0.3, 1.0])
def test_ddim_eta_step_matches_diffusers(scheduler_config, eta):
    schedule = NoiseSchedule.from_config(scheduler_config)
    ref = DDIMScheduler.from_config(
        {**scheduler_config, "clip_sample": False, "set_alpha_to_one": False, "timestep_spacing": "leading"}
    )
    ref.set_timesteps(125)  # step 8: prev_t = t - 8
    gen = torch.Generator().manual_seed(0)
    for t in (999, 503, 15):
        if scheduler_config["prediction_type"] == "epsilon" and t == 999:
            continue
        z, out, noise = (torch.randn(2, 4, 8, 8, generator=gen) for _ in range(3))
        expected = ref.step(out, t, z, eta=eta, variance_noise=noise).prev_sample
        ts = torch.full((2,), t)
        got = ddim_eta_step(schedule, out, z, ts, ts - 8, eta, noise)
        torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)


def test_ddim_to_clean_is_the_x0_estimate_and_ignores_noise():
    schedule = NoiseSchedule.from_config(ZERO_SNR_V)
    z, out = torch.randn(3, 4, 8, 8), torch.randn(3, 4, 8, 8)
    t = torch.tensor([999, 19, 5])
    x0, _ = schedule.split_prediction(out, z, t)
    for eta in (0.0, 1.0):
        got = ddim_eta_step(schedule, out, z, t, torch.full((3,), -1), eta, torch.randn(3, 4, 8, 8))
        torch.testing.assert_close(got, x0)


def test_substep_timesteps_split_skip_and_clamp_to_clean():
    ts = substep_timesteps(torch.tensor([999, 19, 39]), skip=20, substeps=3)
    assert ts.tolist() == [[999, 992, 986, 979], [19, 12, 6, -1], [39, 32, 26, 19]]
    ts = substep_timesteps(torch.tensor([19]), skip=24, substeps=3)  # the paper's k = 24: 8 per sub-step
    assert ts.tolist() == [[19, 11, 3, -1]]
    ts = substep_timesteps(torch.tensor([3]), skip=24, substeps=3)
    assert ts.tolist() == [[3, -1, -1, -1]]


def test_solver_never_asks_the_teacher_below_zero_and_eta0_is_deterministic():
    schedule = NoiseSchedule.from_config(ZERO_SNR_V)
    seen: list[torch.Tensor] = []

    def model(z, t):
        seen.append(t.clone())
        return 0.1 * z

    z = torch.randn(2, 4, 8, 8)
    ts = substep_timesteps(torch.tensor([3, 999]), skip=24, substeps=3)
    a = solve(model, schedule, z, ts, 0.0, torch.randn(2, 3, 4, 8, 8))
    b = solve(model, schedule, z, ts, 0.0, torch.randn(2, 3, 4, 8, 8))
    assert all(bool((t >= 0).all()) for t in seen)
    torch.testing.assert_close(a, b)  # eta = 0 (vanilla CD): the noise is not used
    c = solve(model, schedule, z, ts, 1.0, torch.randn(2, 3, 4, 8, 8))
    assert not torch.allclose(a[1], c[1])  # eta > 0 injects fresh noise


def reference_scheduler(steps: int) -> DDIMScheduler:
    scheduler = DDIMScheduler.from_config(
        {k: v for k, v in ZERO_SNR_V.items() if not k.startswith("_")},
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
    ours = ddim_timesteps(NoiseSchedule.from_config(ZERO_SNR_V), steps)
    assert ours.tolist() == reference_scheduler(steps).timesteps.tolist()
    assert int(ours[0]) == 999  # zero-terminal-SNR models start from pure noise


@pytest.mark.parametrize("steps", [1, 2, 4, 25])
def test_ddim_matches_diffusers_loop(steps: int) -> None:
    model, schedule = ToyModel(), NoiseSchedule.from_config(ZERO_SNR_V)
    noise = torch.randn(3, 4, 8, 8, generator=torch.Generator().manual_seed(steps))
    timesteps = ddim_timesteps(schedule, steps).repeat(3, 1)
    ours = DDIMSampler().sample(model, schedule, timesteps, noise[:, None], torch.ones(3))

    scheduler = reference_scheduler(steps)
    z = noise.clone()
    for t in scheduler.timesteps:
        z = scheduler.step(model(z, t.expand(3)), t, z, eta=0.0).prev_sample
    torch.testing.assert_close(ours, z, rtol=1e-5, atol=1e-5)


def test_teacher_pipeline_is_per_seed_and_guided() -> None:
    previous = torch.get_num_threads()
    torch.set_num_threads(1)  # a busy 2-core machine runs this far faster on one thread
    try:
        _check_teacher_pipeline()
    finally:
        torch.set_num_threads(previous)


def _check_teacher_pipeline() -> None:
    torch.manual_seed(0)
    bundle = build_model("tiny", seed=0)
    bundle.unet = type(bundle.unet).from_config({**bundle.unet.config, "time_cond_proj_dim": None}).eval()
    prompts = ["a red circle", "a blue star on a white background", "a small green cross"]
    teacher = teacher_generate_fn(bundle, steps=2, guidance_scale=4.0)
    batch = teacher(prompts, [5, 6, 7])
    alone = teacher(prompts[1:2], [6])
    assert batch.shape == (3, 64, 64, 3) and batch.dtype.name == "uint8"
    assert abs(batch[1:2].astype(int) - alone.astype(int)).max() <= 1  # batch-size invariance up to rounding
    unguided = teacher_generate_fn(bundle, steps=2, guidance_scale=1.0)(prompts[1:2], [6])
    assert not (unguided == alone).all()


def test_classifier_free_guidance_is_one_batched_call_and_w1_is_the_conditional_model() -> None:
    calls: list[int] = []

    def predict(z: torch.Tensor, t: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
        calls.append(z.shape[0])
        return z * text.mean(dim=(1, 2)).reshape(-1, 1, 1, 1) + t.float().reshape(-1, 1, 1, 1)

    z, t = torch.randn(2, 4, 8, 8), torch.tensor([999, 19])
    text, uncond = torch.randn(2, 77, 16), torch.randn(1, 77, 16)
    w = torch.tensor([4.0, 7.5])
    out = classifier_free_guidance(predict, text, uncond, w)(z, t)
    expected_u, expected_c = predict(z, t, uncond.expand_as(text)), predict(z, t, text)
    torch.testing.assert_close(out, expected_u + w.reshape(-1, 1, 1, 1) * (expected_c - expected_u))
    assert calls[0] == 4  # both halves in one call
    calls.clear()
    torch.testing.assert_close(
        classifier_free_guidance(predict, text, uncond, torch.ones(2))(z, t), predict(z, t, text)
    )
    assert calls == [2, 2]  # the guided model made one call (the second is the reference)


def test_ddim_with_eta_draws_fresh_noise_per_step_and_eta0_draws_none() -> None:
    assert DDIMSampler(eta=0.0).noise_draws(25) == 1
    assert DDIMSampler(eta=0.5).noise_draws(25) == 26
    schedule = NoiseSchedule.from_config(ZERO_SNR_V)
    model = ToyModel()
    timesteps = ddim_timesteps(schedule, 4).repeat(2, 1)
    noise = torch.randn(2, 5, 4, 8, 8, generator=torch.Generator().manual_seed(0))
    a = DDIMSampler(eta=0.5).sample(model, schedule, timesteps, noise, torch.ones(2))
    noise[:, 2] += 1.0
    b = DDIMSampler(eta=0.5).sample(model, schedule, timesteps, noise, torch.ones(2))
    assert not torch.allclose(a, b)
    c = DDIMSampler(eta=0.0).sample(model, schedule, timesteps, noise[:, :1], torch.ones(2))
    d = DDIMSampler(eta=0.0).sample(model, schedule, timesteps, noise[:, :1], torch.ones(2))
    assert torch.equal(c, d)
