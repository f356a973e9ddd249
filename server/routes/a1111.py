"""The AUTOMATIC1111 web UI API that image clients speak: POST /sdapi/v1/txt2img and the read-only routes they
call first (sd-models, samplers, options). Same generation path, batching, limits, keys and metrics as /generate.
"""

from __future__ import annotations

import json
import time
from typing import Any

from fastapi import APIRouter, Request

from scott.pipeline import MAX_STEPS
from server.cancellation import with_cancellation
from server.errors import ApiError, documented
from server.generation import generate_images
from server.schemas import (
    A1111_SAMPLER,
    A1111Model,
    A1111Sampler,
    A1111Txt2ImgRequest,
    A1111Txt2ImgResponse,
    SamplingFields,
)
from server.service import Generation, GenerationService

router = APIRouter(prefix="/sdapi/v1", tags=["AUTOMATIC1111"])


def _invalid(field: str, message: str) -> ApiError:
    return ApiError(422, "invalid_request", f"{field}: {message}", field=field)


def _refuse_what_cannot_be_honoured(body: A1111Txt2ImgRequest) -> None:
    if body.enable_hr:
        raise _invalid("enable_hr", "hires fix is not supported; send enable_hr false and a size the model makes")
    if body.tiling:
        raise _invalid("tiling", "tiling is not supported; send tiling false")
    if body.script_name:
        raise _invalid("script_name", "scripts are not supported; omit script_name")
    if body.refiner_checkpoint not in (None, "", "None", "none"):  # A1111's own ways of saying "no refiner"
        raise _invalid("refiner_checkpoint", "a refiner is not supported; send refiner_checkpoint null")


@router.post(
    "/txt2img",
    response_model=A1111Txt2ImgResponse,
    responses=documented(400, 401, 413, 415, 422, 429, 503, 504),
)
@with_cancellation
async def txt2img(body: A1111Txt2ImgRequest, request: Request) -> A1111Txt2ImgResponse:
    """A1111's txt2img: seed -1 is random; steps past the sampler's maximum run the maximum (info says so)."""
    service: GenerationService = request.app.state.service
    name = service.settings.served_model_name
    _refuse_what_cannot_be_honoured(body)
    ignored = _ignored_overrides(body, name)
    total = _image_count(body, service.settings.max_queue)
    sampling = SamplingFields(
        prompt=body.prompt,
        steps=min(body.steps, MAX_STEPS),  # A1111 clients default to 20-50 steps: refusing them would break them all
        seed=None if body.seed == -1 else body.seed,
        guidance_scale=body.cfg_scale,
        gamma=body.gamma,
    )
    # All batch_size x n_iter images are one job, admitted whole (or refused before any work) and batched by the
    # server; image i has seed + i as A1111 numbers them, mod 2^32 (server.params.ImageRequests).
    generation = await generate_images(service, sampling, n=total, width=body.width, height=body.height)
    info = _info(body, generation, name, ignored)
    images = [data for data, _ in generation.b64_pngs()] if body.send_images else []
    return A1111Txt2ImgResponse(images=images, parameters=body.model_dump(), info=json.dumps(info))


def _image_count(body: A1111Txt2ImgRequest, max_queue: int) -> int:
    """batch_size x n_iter, refused (422) past what this server can ever admit at once: its max_queue."""
    total = body.batch_size * body.n_iter
    if total > max_queue:
        message = (
            f"batch_size x n_iter is {body.batch_size} x {body.n_iter} = {total} images; this server takes at most "
            f"{max_queue} in one request (its max_queue)"
        )
        raise _invalid("n_iter", message)
    return total


def _ignored_overrides(body: A1111Txt2ImgRequest, name: str) -> list[str]:
    """The override_settings keys that change nothing here (info names them); another checkpoint is refused.

    A key set to the value GET /options reports (the served checkpoint among them) is honoured as it is."""
    overrides = body.override_settings or {}
    checkpoint = overrides.get("sd_model_checkpoint")
    if checkpoint is not None and checkpoint != name:
        message = (
            f"{str(checkpoint)[:200]!r} is not served here; the one model served is {name!r} (GET /sdapi/v1/sd-models)"
        )
        raise _invalid("override_settings.sd_model_checkpoint", message)
    options = _options(name)
    return sorted(key for key, value in overrides.items() if key not in options or options[key] != value)


def _info(body: A1111Txt2ImgRequest, generation: Generation, name: str, ignored: list[str]) -> dict[str, Any]:
    """A1111's `info`: what was generated, the steps really run and the ones asked for, the settings ignored."""
    first, seeds = generation.params.first, generation.params.seeds
    n = len(seeds)
    infotexts = [
        f"{body.prompt}\nSteps: {first.steps}, Sampler: {A1111_SAMPLER}, CFG scale: {first.guidance_scale:g}, "
        f"Seed: {seed}, Size: {first.width}x{first.height}, Model: {name}"
        for seed in seeds
    ]
    return {
        "prompt": body.prompt,
        "all_prompts": [body.prompt] * n,
        "negative_prompt": body.negative_prompt,
        "all_negative_prompts": [body.negative_prompt] * n,
        "seed": first.seed,
        "all_seeds": seeds,
        "subseed": first.seed,
        "all_subseeds": seeds,
        "subseed_strength": 0,
        "width": first.width,
        "height": first.height,
        "sampler_name": A1111_SAMPLER,
        "cfg_scale": first.guidance_scale,
        "steps": first.steps,
        "batch_size": body.batch_size,
        "n_iter": body.n_iter,
        "sd_model_name": name,
        "sd_model_hash": None,
        "extra_generation_params": {"Requested steps": body.steps, "Gamma": first.gamma},
        "index_of_first_image": 0,
        "infotexts": infotexts,
        "styles": [],
        "job_timestamp": time.strftime("%Y%m%d%H%M%S"),
        "clip_skip": 1,
        "batch_sizes": generation.result.batch_sizes,
        "ignored_override_settings": ignored,
        "version": "scott-serve",
    }


@router.get("/sd-models", response_model=list[A1111Model], responses=documented(401, 429))
async def sd_models(request: Request) -> list[A1111Model]:
    """The one model served (by its served name: never a server path)."""
    name = request.app.state.service.settings.served_model_name
    return [A1111Model(title=name, model_name=name, filename=name)]


@router.get("/samplers", response_model=list[A1111Sampler], responses=documented(401, 429))
async def samplers() -> list[A1111Sampler]:
    return [A1111Sampler(name=A1111_SAMPLER, aliases=["scott", "lcm", "tcd"])]


@router.get("/options", responses=documented(401, 429))
async def options(request: Request) -> dict[str, Any]:
    """The options A1111 clients read: the checkpoint served, the image format."""
    return _options(request.app.state.service.settings.served_model_name)


def _options(name: str) -> dict[str, Any]:
    """What GET /options reports, and so the override_settings values that are honoured as they are."""
    return {
        "sd_model_checkpoint": name,
        "sd_checkpoint_hash": None,
        "samples_format": "png",
        "CLIP_stop_at_last_layers": 1,
    }
