"""The one generate step every image route shares: a body's parameters with the served model's defaults, run."""

from __future__ import annotations

from server.params import resolve
from server.schemas import SamplingFields
from server.service import Generation, GenerationService


async def generate_images(
    service: GenerationService,
    body: SamplingFields,
    *,
    n: int = 1,
    width: int | None = None,
    height: int | None = None,
    size_field: str | None = None,
    timeout_s: float | None = None,
) -> Generation:
    """503 until the model is ready, 422 for a size it cannot make (naming size_field if given), then the images."""
    info = service.require_ready()
    params = resolve(info, **body.sampling(), width=width, height=height, n=n, size_field=size_field)
    return await service.run(params, timeout_s)
