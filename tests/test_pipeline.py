"""The pipeline makes the same images as diffusers' own pipelines on the same weights, seeds and steps."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from diffusers import StableDiffusionPipeline, UNet2DConditionModel

from engines.torch_backend import TorchBackend
from scott.models import PRESETS, ModelBundle, build_model
from scott.pipeline import ImageRequest, ModelInfo, TextToImagePipeline
from scott.reference import diffusers_lcm_pipeline


def _pipeline(bundle: ModelBundle) -> TextToImagePipeline:
    backend = TorchBackend(bundle, torch.device("cpu"))
    return TextToImagePipeline(backend, bundle.tokenizer, bundle.schedule, ModelInfo.from_bundle(bundle, "test"))


@pytest.fixture(scope="module")
def bundle() -> ModelBundle:
    return build_model("tiny", seed=0)


@pytest.fixture(scope="module")
def cfg_bundle() -> ModelBundle:
    """The tiny model with a UNet that has no guidance embedding: served with true CFG."""
    model = build_model("tiny", seed=1)
    torch.manual_seed(1)
    model.unet = UNet2DConditionModel.from_config({**PRESETS["tiny"]["unet"], "time_cond_proj_dim": None}).eval()
    return model


def _request(prompt: str = "a red circle", **overrides) -> ImageRequest:
    fields = {"prompt": prompt, "seed": 0, "steps": 4, "guidance_scale": 6.0, "gamma": 1.0, "width": 64, "height": 64}
    return ImageRequest(**{**fields, **overrides})


def _diffusers_images(pipe, prompt: str, steps: int, guidance: float, seed: int) -> np.ndarray:
    images = pipe(
        prompt,
        num_inference_steps=steps,
        guidance_scale=guidance,
        generator=torch.Generator().manual_seed(seed),
        height=64,
        width=64,
        output_type="np",
    ).images
    return (images * 255).round().astype(np.uint8)


@pytest.mark.parametrize("steps", [1, 4])
def test_matches_diffusers_lcm_pipeline(bundle: ModelBundle, steps: int) -> None:
    reference = diffusers_lcm_pipeline(bundle)
    expected = _diffusers_images(reference, "a large red circle", steps, 6.0, seed=5)
    ours = _pipeline(bundle).generate([_request("a large red circle", steps=steps, seed=5)]).images
    assert ours.shape == expected.shape == (1, 64, 64, 3)
    assert np.abs(ours.astype(int) - expected.astype(int)).max() <= 1


def test_true_cfg_matches_stable_diffusion_pipeline(cfg_bundle: ModelBundle) -> None:
    reference = diffusers_lcm_pipeline(cfg_bundle, StableDiffusionPipeline)
    pipeline = _pipeline(cfg_bundle)
    assert pipeline.info.guidance_embedding_dim is None
    expected = _diffusers_images(reference, "a blue square", 2, 4.0, seed=3)
    ours = pipeline.generate([_request("a blue square", steps=2, guidance_scale=4.0, seed=3)]).images
    assert np.abs(ours.astype(int) - expected.astype(int)).max() <= 1


def test_guidance_changes_the_cfg_image(cfg_bundle: ModelBundle) -> None:
    pipeline = _pipeline(cfg_bundle)
    plain = pipeline.generate([_request(guidance_scale=1.0)]).images
    guided = pipeline.generate([_request(guidance_scale=7.0)]).images
    assert np.abs(plain.astype(int) - guided.astype(int)).mean() > 1.0


def test_batch_gives_each_request_its_own_image(bundle: ModelBundle) -> None:
    pipeline = _pipeline(bundle)
    requests = [
        _request("a red circle", seed=1, gamma=0.3, guidance_scale=2.0),
        _request("a green star on a white background", seed=2, gamma=0.9, guidance_scale=8.0),
        _request("a red circle", seed=3, gamma=0.0, guidance_scale=5.0),
    ]
    batched = pipeline.generate(requests).images
    for i, request in enumerate(requests):
        alone = pipeline.generate([request]).images[0]
        # fp32 CPU kernels may block differently at another batch size: allow one level of rounding.
        assert np.abs(batched[i].astype(int) - alone.astype(int)).max() <= 1
    assert np.abs(batched[0].astype(int) - batched[2].astype(int)).mean() > 1.0  # seeds matter


def test_long_prompt_is_truncated_and_reported(bundle: ModelBundle) -> None:
    pipeline = _pipeline(bundle)
    long_prompt = " ".join(["red"] * 100)
    output = pipeline.generate([_request(long_prompt), _request("short")])
    assert output.prompt_truncated == [True, False]
    assert pipeline.count_tokens(long_prompt) > pipeline.info.max_prompt_tokens


def test_stage_timings_are_measured(bundle: ModelBundle) -> None:
    timings = _pipeline(bundle).generate([_request()]).timings
    assert timings.text > 0 and timings.unet > 0 and timings.vae > 0
    assert timings.total == pytest.approx(timings.text + timings.unet + timings.vae)


def test_rejects_mixed_batches_and_bad_sizes(bundle: ModelBundle) -> None:
    pipeline = _pipeline(bundle)
    with pytest.raises(ValueError, match="share"):
        pipeline.generate([_request(steps=1), _request(steps=2)])
    with pytest.raises(ValueError, match="multiple of 16"):
        pipeline.generate([_request(width=72)])
    with pytest.raises(ValueError, match="steps"):
        pipeline.generate([_request(steps=5)])
    assert pipeline.info.check_size(128, 32) is None
    assert "between 32 and 128" in (pipeline.info.check_size(256, 64) or "")
