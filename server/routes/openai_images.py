"""The OpenAI Images API subset the official clients need: POST /v1/images/generations, GET /v1/models."""

from __future__ import annotations

import time

from fastapi import APIRouter, Request

from server.cancellation import with_cancellation
from server.errors import ApiError, documented
from server.generation import generate_images
from server.params import parse_size
from server.schemas import (
    OpenAIImage,
    OpenAIImageRequest,
    OpenAIImagesResponse,
    OpenAIModel,
    OpenAIModelList,
)
from server.service import GenerationService

router = APIRouter(prefix="/v1")

_STARTED = int(time.time())


def _invalid(field: str, message: str) -> ApiError:
    return ApiError(400, "invalid_request", f"{field}: {message}", field=field)


@router.post(
    "/images/generations",
    response_model=OpenAIImagesResponse,
    responses=documented(400, 401, 404, 413, 415, 422, 429, 503, 504),
)
@with_cancellation
async def images_generations(body: OpenAIImageRequest, request: Request) -> OpenAIImagesResponse:
    service: GenerationService = request.app.state.service
    name = service.settings.served_model_name
    if body.model is not None and body.model != name:
        raise ApiError(404, "model_not_found", f"model: {body.model!r} is not served here; available: {name}", "model")
    if body.response_format == "url":
        raise _invalid("response_format", "'url' is not supported: this server keeps no files; use b64_json")
    if body.stream:
        raise _invalid("stream", "streaming is not supported; omit stream or set it to false")
    if body.output_format not in (None, "png"):
        raise _invalid("output_format", f"{body.output_format!r} is not supported; only png")
    width = height = None
    if body.size is not None and body.size != "auto":
        try:
            width, height = parse_size(body.size)
        except ValueError as exc:  # 422 as for a size the model cannot make: one status for every bad size
            raise ApiError(422, "invalid_request", f"size: {exc}", field="size") from exc
    generation = await generate_images(service, body, n=body.n or 1, width=width, height=height, size_field="size")
    first = generation.params.first
    return OpenAIImagesResponse(
        created=int(time.time()),
        data=[OpenAIImage(b64_json=data, seed=seed) for data, seed in generation.b64_pngs()],
        size=f"{first.width}x{first.height}",
    )


@router.get("/models", response_model=OpenAIModelList, responses=documented(401, 429))
async def list_models(request: Request) -> OpenAIModelList:
    service: GenerationService = request.app.state.service
    return OpenAIModelList(data=[OpenAIModel(id=service.settings.served_model_name, created=_STARTED)])
