"""Adapters from a served pipeline to evaluate()'s generate_fn: (prompts, seeds) -> uint8 images (B, H, W, 3)."""

from __future__ import annotations

import numpy as np

from scott.data.attributes import parse_caption
from scott.data.samples import sample_for_prompt
from scott.models import ModelBundle
from scott.pipeline import ImageRequest, TextToImagePipeline
from scott.sampler import DDIMSampler


def pipeline_generate_fn(
    pipeline: TextToImagePipeline,
    steps: int,
    guidance_scale: float | None = None,
    gamma: float | None = None,
    size: int | None = None,
):
    """generate_fn for evaluate(): one ImageRequest per (prompt, seed), model defaults where left None."""
    info = pipeline.info
    w = info.default_guidance_scale if guidance_scale is None else guidance_scale
    g = info.default_gamma if gamma is None else gamma
    side = size or info.default_size

    def generate(prompts: list[str], seeds: list[int]) -> np.ndarray:
        requests = [
            ImageRequest(prompt=p, seed=s, steps=steps, guidance_scale=w, gamma=g, width=side, height=side)
            for p, s in zip(prompts, seeds, strict=True)
        ]
        return pipeline.generate(requests).images

    return generate


def teacher_generate_fn(bundle: ModelBundle, steps: int, guidance_scale: float):
    """generate_fn for a teacher: the same pipeline, with DDIM (eta = 0) at `steps` trailing timesteps and CFG."""
    return pipeline_generate_fn(TextToImagePipeline.from_bundle(bundle, DDIMSampler()), steps, guidance_scale)


REAL_START = 5_000  # real renders apart from evaluate()'s own reference images (indices 0 .. n-1)


def real_generate_fn(kind: str | None = None, level: float = 0.0):
    """generate_fn of real renders of each prompt (index REAL_START + seed), degraded by kind at level
    (scott.eval.validation's degradations): a perfect generator, and known-worse ones."""
    from scott.eval.validation import degrade

    def generate(prompts: list[str], seeds: list[int]) -> np.ndarray:
        images = np.stack(
            [sample_for_prompt(parse_caption(p), REAL_START + s).image for p, s in zip(prompts, seeds, strict=True)]
        )
        return images if kind is None else degrade(images, kind, level, seed=seeds[0])

    return generate
