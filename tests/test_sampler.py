"""The sampler agrees with diffusers' LCMScheduler and TCDScheduler on the same model, inputs and noise."""

from __future__ import annotations

import pytest
import torch
from diffusers import LCMScheduler, TCDScheduler, UNet2DConditionModel

from scott.models import PRESETS
from scott.sampler import draw_noise, sample_consistency, sample_generators
from scott.schedule import NoiseSchedule, guidance_scale_embedding

SD15_CONFIG = PRESETS["sd15"]["scheduler"]
ZERO_SNR_V_CONFIG = PRESETS["tiny"]["scheduler"]
LATENT_SHAPE = (4, 8, 8)


@pytest.fixture(scope="module")
def unet() -> UNet2DConditionModel:
    torch.manual_seed(0)
    return UNet2DConditionModel.from_config(PRESETS["tiny"]["unet"]).eval()


@pytest.fixture(scope="module")
def text() -> torch.Tensor:
    return torch.randn(1, 77, 128, generator=torch.Generator().manual_seed(1))


def _model_fn(unet: UNet2DConditionModel, text: torch.Tensor, calls: list[torch.Tensor] | None = None):
    cond = guidance_scale_embedding(torch.tensor([6.0]), 64)

    @torch.no_grad()
    def model(z: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        if calls is not None:
            calls.append(z.clone())
        batch = z.shape[0]
        return unet(z, t, encoder_hidden_states=text.expand(batch, -1, -1), timestep_cond=cond.expand(batch, -1)).sample

    return model


@pytest.mark.parametrize("config", [SD15_CONFIG, ZERO_SNR_V_CONFIG], ids=["sd15-eps", "zero-snr-v"])
def test_alphas_cumprod_equal_diffusers(config: dict) -> None:
    ours = NoiseSchedule.from_config(config).alphas_cumprod
    theirs = LCMScheduler.from_config(config).alphas_cumprod
    torch.testing.assert_close(ours, theirs, rtol=0, atol=0)


@pytest.mark.parametrize("steps", [1, 2, 3, 4, 8, 50])
def test_inference_timesteps_equal_lcm_and_tcd(steps: int) -> None:
    ours = NoiseSchedule.from_config(SD15_CONFIG).inference_timesteps(steps)
    for scheduler_cls in (LCMScheduler, TCDScheduler):
        scheduler = scheduler_cls.from_config(SD15_CONFIG)
        scheduler.set_timesteps(steps)
        assert ours.tolist() == scheduler.timesteps.tolist()


def test_four_step_grid_is_the_documented_one() -> None:
    assert NoiseSchedule.from_config(SD15_CONFIG).inference_timesteps(4).tolist() == [999, 759, 499, 259]


def test_guidance_embedding_equals_lcm_pipeline() -> None:
    from diffusers import LatentConsistencyModelPipeline

    w = torch.tensor([1.0, 3.5, 8.0])
    expected = LatentConsistencyModelPipeline.get_guidance_scale_embedding(None, w - 1, embedding_dim=64)
    torch.testing.assert_close(guidance_scale_embedding(w, 64), expected, rtol=0, atol=1e-6)


@pytest.mark.parametrize("config", [SD15_CONFIG, ZERO_SNR_V_CONFIG], ids=["sd15-eps", "zero-snr-v"])
@pytest.mark.parametrize("steps", [1, 2, 4])
def test_gamma_one_matches_lcm_scheduler(unet, text, config: dict, steps: int) -> None:
    model = _model_fn(unet, text)
    scheduler = LCMScheduler.from_config(config)
    scheduler.set_timesteps(steps)
    generator = torch.Generator().manual_seed(42)
    z = torch.randn((1, *LATENT_SHAPE), generator=generator)
    for t in scheduler.timesteps:
        out = model(z, t.reshape(1))
        z, denoised = scheduler.step(out, t, z, generator=generator, return_dict=False)

    schedule = NoiseSchedule.from_config(config)
    noise = draw_noise(sample_generators([42]), LATENT_SHAPE, steps)
    ours = sample_consistency(model, schedule, schedule.inference_timesteps(steps)[None], noise, torch.tensor([1.0]))
    torch.testing.assert_close(ours, denoised, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("config", [SD15_CONFIG, ZERO_SNR_V_CONFIG], ids=["sd15-eps", "zero-snr-v"])
@pytest.mark.parametrize("gamma", [0.0, 0.3, 0.7])
def test_gamma_below_one_matches_tcd_scheduler(unet, text, config: dict, gamma: float) -> None:
    """TCD has no boundary condition, so compare with it off; every UNet input along the way must agree."""
    steps = 4
    reference_calls: list[torch.Tensor] = []
    model = _model_fn(unet, text, reference_calls)
    scheduler = TCDScheduler.from_config(config)
    scheduler.set_timesteps(steps)
    generator = torch.Generator().manual_seed(7)
    z = torch.randn((1, *LATENT_SHAPE), generator=generator)
    for t in scheduler.timesteps:
        z, _ = scheduler.step(model(z, t.reshape(1)), t, z, eta=gamma, generator=generator, return_dict=False)

    our_calls: list[torch.Tensor] = []
    schedule = NoiseSchedule.from_config(config)
    sample_consistency(
        _model_fn(unet, text, our_calls),
        schedule,
        schedule.inference_timesteps(steps)[None],
        draw_noise(sample_generators([7]), LATENT_SHAPE, steps),
        torch.tensor([gamma]),
        boundary_condition=False,
    )
    assert len(our_calls) == len(reference_calls) == steps
    for ours, theirs in zip(our_calls, reference_calls, strict=True):
        torch.testing.assert_close(ours, theirs, rtol=1e-4, atol=1e-4)


def test_each_sample_ignores_its_batch_mates() -> None:
    """Per-sample seeds, gammas and timesteps: a batch gives each sample what it gets alone."""
    schedule = NoiseSchedule.from_config(SD15_CONFIG)

    def model(z: torch.Tensor, t: torch.Tensor) -> torch.Tensor:  # per-sample, batch-independent
        return torch.tanh(z) * (t.float() / 1000).reshape(-1, 1, 1, 1)

    seeds, gammas = [3, 11, 5], [0.0, 0.5, 1.0]
    timesteps = torch.stack([schedule.inference_timesteps(3)] * 3)
    noise = draw_noise(sample_generators(seeds), LATENT_SHAPE, 3)
    batched = sample_consistency(model, schedule, timesteps, noise, torch.tensor(gammas))
    for i, (seed, gamma) in enumerate(zip(seeds, gammas, strict=True)):
        alone_noise = draw_noise(sample_generators([seed]), LATENT_SHAPE, 3)
        torch.testing.assert_close(alone_noise[0], noise[i], rtol=0, atol=0)
        alone = sample_consistency(model, schedule, timesteps[i : i + 1], alone_noise, torch.tensor([gamma]))
        torch.testing.assert_close(batched[i : i + 1], alone, rtol=0, atol=0)


def test_stochasticity_follows_gamma() -> None:
    """gamma = 0 is deterministic in the seed of the re-noising; gamma > 0 is not."""
    schedule = NoiseSchedule.from_config(SD15_CONFIG)

    def model(z: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return 0.5 * z

    timesteps = schedule.inference_timesteps(4)[None]
    start = draw_noise(sample_generators([0]), LATENT_SHAPE, 1)

    def run(gamma: float, noise_seed: int) -> torch.Tensor:
        """Same starting latent, re-noising noise from another seed."""
        noise = draw_noise(sample_generators([noise_seed]), LATENT_SHAPE, 4)
        noise[:, :1] = start
        return sample_consistency(model, schedule, timesteps, noise, torch.tensor([gamma]))

    torch.testing.assert_close(run(0.0, 1), run(0.0, 2), rtol=0, atol=0)
    assert not torch.allclose(run(0.5, 1), run(0.5, 2))


def test_rejects_bad_arguments() -> None:
    schedule = NoiseSchedule.from_config(SD15_CONFIG)
    noise = torch.zeros(2, 2, *LATENT_SHAPE)
    timesteps = schedule.inference_timesteps(2).repeat(2, 1)
    with pytest.raises(ValueError, match="gamma"):
        sample_consistency(lambda z, t: z, schedule, timesteps, noise, torch.tensor([0.5, 1.5]))
    with pytest.raises(ValueError, match="noise must be"):
        sample_consistency(lambda z, t: z, schedule, timesteps, noise[:, :1], torch.tensor([0.5, 0.5]))
    with pytest.raises(ValueError, match="timesteps must be"):
        sample_consistency(lambda z, t: z, schedule, timesteps[:1], noise, torch.tensor([0.5, 0.5]))
    with pytest.raises(ValueError, match="num_steps"):
        schedule.inference_timesteps(0)
