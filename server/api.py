"""POST /generate: validate, dispatch to the service, answer JSON with base64 PNGs or one raw image/png."""

from __future__ import annotations

import time

from fastapi import APIRouter, Request, Response

from server.batcher import JobResult
from server.errors import ApiError
from server.images import PNG, b64, wants_png
from server.params import resolve
from server.schemas import ErrorResponse, GeneratedImage, GenerateRequest, GenerateResponse, Timings
from server.service import ClientGone, GenerationService

router = APIRouter()

CLIENT_CLOSED = 499  # nginx's code for "client closed request"; nobody receives it


@router.post(
    "/generate",
    response_model=GenerateResponse,
    responses={
        200: {"content": {PNG: {}}, "description": "JSON, or the PNG itself for Accept: image/png"},
        **{code: {"model": ErrorResponse} for code in (400, 406, 413, 422, 429, 503, 504)},
    },
)
async def generate(body: GenerateRequest, request: Request) -> Response | GenerateResponse:
    start = time.perf_counter()
    service: GenerationService = request.app.state.service
    info = service.require_ready()
    params = resolve(
        info,
        body.prompt,
        seed=body.seed,
        steps=body.steps,
        guidance_scale=body.guidance_scale,
        gamma=body.gamma,
        width=body.width,
        height=body.height,
        num_images=body.num_images,
    )
    png = wants_png(request.headers.get("accept"))
    if png and params.num_images != 1:
        raise ApiError(
            406,
            "not_acceptable",
            f"num_images: Accept: image/png returns exactly 1 image, {params.num_images} were asked for; "
            "accept application/json for more",
            field="num_images",
        )
    timeout_s = None if body.timeout_ms is None else body.timeout_ms / 1000.0
    try:
        generation = await service.run(params.image_requests(), timeout_s, request)
    except ClientGone:
        return Response(status_code=CLIENT_CLOSED)
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
        return Response(generation.pngs[0], media_type=PNG, headers=_png_headers(params.seed, result, timings))
    return GenerateResponse(
        model=service.settings.served_model_name,
        images=[GeneratedImage(b64_png=b64(data), seed=params.seed + i) for i, data in enumerate(generation.pngs)],
        width=params.width,
        height=params.height,
        steps=params.steps,
        guidance_scale=params.guidance_scale,
        gamma=params.gamma,
        prompt_truncated=result.prompt_truncated,
        batch_sizes=result.batch_sizes,
        timings=timings,
    )


def _png_headers(seed: int, result: JobResult, timings: Timings) -> dict[str, str]:
    """A raw PNG carries its metadata in headers; Server-Timing (ms) shows up in browser dev tools."""
    stages = ("queue", "text", "unet", "vae", "encode", "total")
    server_timing = ", ".join(f"{name};dur={getattr(timings, name) * 1000:.2f}" for name in stages)
    return {
        "X-Seed": str(seed),
        "X-Prompt-Truncated": "true" if result.prompt_truncated else "false",
        "X-Batch-Sizes": ",".join(str(size) for size in result.batch_sizes),
        "Server-Timing": server_timing,
    }
