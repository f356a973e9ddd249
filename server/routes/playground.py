"""The browser playground: GET / serves one self-contained page; GET /info gives it the model's sizes, defaults and
example prompts.

The page calls the public API (POST /generate) like any client, so it shows exactly what a client gets.
"""

from __future__ import annotations

from functools import cache
from importlib.resources import files

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse
from pydantic import BaseModel

from scott.pipeline import MAX_STEPS
from server.errors import documented
from server.limits import MAX_GUIDANCE, MAX_IMAGES, MAX_PROMPT_CHARS
from server.params import served_sizes
from server.service import GenerationService

router = APIRouter()


class ModelSummary(BaseModel):
    """What a client needs to build a valid request: sizes, defaults, limits, and example prompts."""

    model: str
    backend: str  # the runtime serving it (torch | onnx | openvino | tensorrt)
    precision: str  # what its networks compute in (f32 | bf16 | f16)
    decoder: str  # full (the model's VAE decoder) | tiny (an AutoencoderTiny in its place)
    sizes: list[int]  # allowed widths and heights (each side independently): those the model serves well
    default_size: int
    default_steps: int
    max_steps: int
    default_guidance_scale: float
    max_guidance_scale: float
    default_gamma: float
    max_images: int
    max_prompt_chars: int
    examples: list[str]  # prompts in the model's own vocabulary (its folder's serving.json); may be empty


@cache
def _page() -> str:
    return (files("server") / "static" / "playground.html").read_text(encoding="utf-8")


@router.get("/", response_class=HTMLResponse, include_in_schema=False)
async def playground() -> HTMLResponse:
    # no-store: the page is tiny, and a stale copy after an upgrade would call the API wrongly
    return HTMLResponse(_page(), headers={"Cache-Control": "no-store"})


@router.get("/info", response_model=ModelSummary, responses=documented(401, 429, 503))
async def info(request: Request) -> ModelSummary:
    """The served model's sizes, defaults, limits and example prompts; 503 until it is loaded."""
    service: GenerationService = request.app.state.service
    model = service.require_ready()
    return ModelSummary(
        model=service.settings.served_model_name,
        backend=service.pipeline.backend.name,
        precision=service.pipeline.backend.precision,
        decoder=model.decoder,
        sizes=served_sizes(model),
        default_size=model.default_size,
        default_steps=model.default_steps,
        max_steps=MAX_STEPS,
        default_guidance_scale=model.default_guidance_scale,
        max_guidance_scale=MAX_GUIDANCE,
        default_gamma=model.default_gamma,
        max_images=MAX_IMAGES,
        max_prompt_chars=MAX_PROMPT_CHARS,
        examples=list(model.examples),
    )
