"""POST /generate: validate, dispatch to the service, answer JSON with base64 PNGs or one raw image/png."""

from __future__ import annotations

import time

from fastapi import APIRouter, Request, Response

from server.cancellation import with_cancellation
from server.errors import ApiError, documented
from server.generation import generate_images
from server.images import PNG, wants_png
from server.schemas import GeneratedImage, GenerateRequest, GenerateResponse, Timings
from server.service import Generation, GenerationService

router = APIRouter()


@router.post(
    "/generate",
    response_model=GenerateResponse,
    responses={
        200: {"content": {PNG: {}}, "description": "JSON, or the PNG itself for Accept: image/png"},
        **documented(400, 401, 406, 413, 415, 422, 429, 503, 504),
    },
)
@with_cancellation
async def generate(body: GenerateRequest, request: Request) -> Response | GenerateResponse:
    start = time.perf_counter()
    service: GenerationService = request.app.state.service
    png = wants_png(request.headers.get("accept"))
    if png and body.num_images != 1:
        raise ApiError(
            406,
            "not_acceptable",
            f"num_images: Accept: image/png returns exactly 1 image, {body.num_images} were asked for; "
            "accept application/json for more",
            field="num_images",
        )
    timeout_s = None if body.timeout_ms is None else body.timeout_ms / 1000.0
    generation = await generate_images(
        service, body, n=body.num_images, width=body.width, height=body.height, timeout_s=timeout_s
    )
    result = generation.result
    timings = Timings(
        queue=result.queue_s,
        text=result.timings.text,
        unet=result.timings.unet,
        vae=result.timings.vae,
        encode=generation.encode_s,
        total=time.perf_counter() - start,
    )
    if png:
        return Response(generation.pngs[0], media_type=PNG, headers=_png_headers(generation, timings))
    first = generation.params.first
    return GenerateResponse(
        model=service.settings.served_model_name,
        images=[GeneratedImage(b64_png=data, seed=seed) for data, seed in generation.b64_pngs()],
        width=first.width,
        height=first.height,
        steps=first.steps,
        guidance_scale=first.guidance_scale,
        gamma=first.gamma,
        prompt_truncated=result.prompt_truncated,
        batch_sizes=result.batch_sizes,
        timings=timings,
    )


def _png_headers(generation: Generation, timings: Timings) -> dict[str, str]:
    """A raw PNG carries its metadata in headers; Server-Timing (ms) shows up in browser dev tools."""
    stages = ("queue", "text", "unet", "vae", "encode", "total")
    server_timing = ", ".join(f"{name};dur={getattr(timings, name) * 1000:.2f}" for name in stages)
    result = generation.result
    return {
        "X-Seed": str(generation.params.first.seed),
        "X-Prompt-Truncated": "true" if result.prompt_truncated else "false",
        "X-Batch-Sizes": ",".join(str(size) for size in result.batch_sizes),
        "Server-Timing": server_timing,
    }
