"""diffusers' own pipeline on a ModelBundle's modules: the reference our pipeline is tested and benchmarked against."""

from __future__ import annotations

from diffusers import DiffusionPipeline, LatentConsistencyModelPipeline, LCMScheduler

from scott.models import ModelBundle


def diffusers_lcm_pipeline(
    bundle: ModelBundle, pipeline_class: type[DiffusionPipeline] = LatentConsistencyModelPipeline
) -> DiffusionPipeline:
    """A diffusers pipeline sharing the bundle's modules (no copies), with an LCMScheduler from its config.

    LatentConsistencyModelPipeline for UNets with a guidance embedding; StableDiffusionPipeline for true CFG.
    """
    pipe = pipeline_class(
        vae=bundle.vae,
        text_encoder=bundle.text_encoder,
        tokenizer=bundle.tokenizer,
        unet=bundle.unet,
        scheduler=LCMScheduler.from_config(bundle.scheduler_config),
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    pipe.set_progress_bar_config(disable=True)
    return pipe
