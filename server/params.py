"""From a validated request to ImageRequests: the model's defaults, its size limits, one seed per image."""

from __future__ import annotations

import dataclasses
import re
import secrets
from dataclasses import dataclass

from scott.pipeline import ImageRequest, ModelInfo
from server.errors import ApiError
from server.limits import MAX_SEED, NOT_BLANK

_SIZE = re.compile(r"([0-9]{1,5})(?:x([0-9]{1,5}))?")  # ASCII digits, a lowercase x, nothing around them


def parse_size(text: str) -> tuple[int, int]:
    """'512x384' (width x height) or '512' (square) -> (width, height): the one size grammar of every
    command and of the OpenAI `size` field. Exactly that: no spaces, no 'X', no digits of other scripts.

    A parsed size may still be one the model cannot make; ModelInfo.check_size says so.
    """
    match = _SIZE.fullmatch(text)
    if not match:
        raise ValueError(f"size must look like WIDTHxHEIGHT or SIDE, e.g. 512x384 or 512; got {text!r}")
    width = int(match.group(1))
    return width, int(match.group(2) or width)


@dataclass(frozen=True)
class ImageRequests:
    """The n images of one request: image i is `first` with seed (first.seed + i) mod 2**32 (after MAX_SEED: 0).

    So a request for n images makes the same images as n requests for one image each, and every seed returned
    is one a request may send back to make its image alone.
    """

    first: ImageRequest
    n: int = 1

    @property
    def seeds(self) -> list[int]:
        return [(self.first.seed + i) % (MAX_SEED + 1) for i in range(self.n)]

    def expand(self) -> list[ImageRequest]:
        return [dataclasses.replace(self.first, seed=seed) for seed in self.seeds]


def served_sizes(info: ModelInfo) -> list[int]:
    """Every width (and height) the model serves: what ModelInfo.check_size accepts (its serving.json may narrow it)."""
    return [side for side in range(info.min_size, info.max_size + 1) if not info.check_size(side, side)]


def resolve(
    info: ModelInfo,
    prompt: str,
    *,
    seed: int | None = None,
    steps: int | None = None,
    guidance_scale: float | None = None,
    gamma: float | None = None,
    width: int | None = None,
    height: int | None = None,
    n: int = 1,
    size_field: str | None = None,
) -> ImageRequests:
    """Fill defaults from the model and check the size against it (422 naming the field; size_field overrides)."""
    if not re.search(NOT_BLANK, prompt):
        raise ApiError(422, "invalid_request", "prompt: must contain more than whitespace", field="prompt")
    width = info.default_size if width is None else width
    height = info.default_size if height is None else height
    problem = info.check_size(width, height)
    if problem:
        field = size_field or ("width" if problem.startswith("width") else "height")
        raise ApiError(422, "invalid_request", f"{field}: {problem}", field=field)
    first = ImageRequest(
        prompt=prompt,
        seed=secrets.randbelow(MAX_SEED + 1) if seed is None else seed,
        steps=info.default_steps if steps is None else steps,
        guidance_scale=info.default_guidance_scale if guidance_scale is None else guidance_scale,
        gamma=info.default_gamma if gamma is None else gamma,
        width=width,
        height=height,
    )
    return ImageRequests(first, n)
