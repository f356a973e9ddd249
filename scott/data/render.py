"""Draw one anti-aliased shape on a flat background: attributes + a random generator -> a 64x64 RGB image."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw

from scott.data.attributes import POSITIONS, Attributes

IMAGE_SIZE = 64
SUPERSAMPLE = 4  # draw at 4x and box-downsample: anti-aliased edges like a real photo's

# Base colours; every image jitters them (see draw_params) so a caption covers a range of shades.
SHAPE_RGB: dict[str, tuple[int, int, int]] = {
    "red": (220, 40, 40),
    "orange": (245, 140, 25),
    "yellow": (240, 215, 35),
    "green": (45, 175, 65),
    "cyan": (40, 200, 215),
    "blue": (40, 80, 225),
    "purple": (140, 60, 200),
    "pink": (245, 125, 185),
}
# Backgrounds are muted, so a "red circle on a blue background" and a "blue circle on a red one" differ.
BACKGROUND_RGB: dict[str, tuple[int, int, int]] = {
    "black": (25, 25, 25),
    "white": (235, 235, 235),
    "gray": (125, 125, 125),
    "red": (150, 35, 40),
    "green": (35, 105, 50),
    "blue": (30, 50, 135),
}

# Radius ranges (pixels at 64x64) per size class, with gaps between classes so size is unambiguous.
SIZE_RADIUS: dict[str, tuple[float, float]] = {"small": (4.5, 6.5), "medium": (8.0, 10.0), "large": (11.5, 14.0)}
# Region centres along each axis (left/top, center, right/bottom) and the jitter of the shape centre
# around them; the gaps between regions keep position unambiguous.
REGION_CENTERS: tuple[float, float, float] = (13.0, 32.0, 51.0)
POSITION_JITTER = 4.5
# Per-channel shade jitter: a brightness factor and an additive offset.
BRIGHTNESS_RANGE = (0.9, 1.1)
CHANNEL_JITTER = 10.0

# Furthest point of each outline from its centre, in units of the radius (keeps shapes inside the canvas).
_EXTENT = {"circle": 1.0, "square": 0.886 * math.sqrt(2), "triangle": 1.35, "star": 1.35, "cross": 1.16}


@dataclass(frozen=True)
class RenderParams:
    """Everything that decides the pixels of one sample (in 64x64 pixel coordinates)."""

    shape: str
    center: tuple[float, float]  # (x, y), y down
    radius: float
    rotation: float  # radians
    fill: tuple[int, int, int]
    background: tuple[int, int, int]


def _jitter_rgb(rgb: tuple[int, int, int], u: np.ndarray) -> tuple[int, int, int]:
    """Shade variation from 4 uniforms in [0, 1): a brightness factor and a per-channel offset."""
    lo, hi = BRIGHTNESS_RANGE
    scale = lo + (hi - lo) * float(u[0])
    return tuple(
        min(255, max(0, round(c * scale + CHANNEL_JITTER * (2.0 * float(v) - 1.0))))
        for c, v in zip(rgb, u[1:4], strict=True)
    )


def draw_params(attrs: Attributes, rng: np.random.Generator) -> RenderParams:
    """Sample the within-caption variation (placement, size, rotation, shades) of a complete record."""
    if not attrs.complete:
        raise ValueError(f"rendering needs every attribute, got {attrs}")
    u = rng.random(12)  # one draw: numpy's per-call overhead dominates a sample's cost otherwise
    lo, hi = SIZE_RADIUS[attrs.size]
    radius = lo + (hi - lo) * float(u[0])
    row, col = divmod(POSITIONS.index(attrs.position), 3)
    margin = _EXTENT[attrs.shape] * radius + 1.0
    center = []
    for region, v in ((col, u[1]), (row, u[2])):
        c = REGION_CENTERS[region] + POSITION_JITTER * (2.0 * float(v) - 1.0)
        center.append(min(max(c, margin), IMAGE_SIZE - margin))
    return RenderParams(
        shape=attrs.shape,
        center=(center[0], center[1]),
        radius=radius,
        rotation=2.0 * math.pi * float(u[3]),
        fill=_jitter_rgb(SHAPE_RGB[attrs.color], u[4:8]),
        background=_jitter_rgb(BACKGROUND_RGB[attrs.background], u[8:12]),
    )


def _outline(shape: str, radius: float) -> list[tuple[float, float]]:
    """Polygon vertices around the origin, unrotated."""
    if shape == "square":
        h = 0.886 * radius  # same area as the circle of this radius
        return [(-h, -h), (h, -h), (h, h), (-h, h)]
    if shape == "triangle":
        r = 1.35 * radius
        return [(r * math.sin(a), -r * math.cos(a)) for a in (0.0, 2 * math.pi / 3, 4 * math.pi / 3)]
    if shape == "star":
        outer, inner = 1.35 * radius, 0.55 * radius
        return [
            (
                (outer if i % 2 == 0 else inner) * math.sin(i * math.pi / 5),
                -(outer if i % 2 == 0 else inner) * math.cos(i * math.pi / 5),
            )
            for i in range(10)
        ]
    if shape == "cross":
        a, w = 1.1 * radius, 0.4 * radius
        return [
            (w, -a),
            (w, -w),
            (a, -w),
            (a, w),
            (w, w),
            (w, a),
            (-w, a),
            (-w, w),
            (-a, w),
            (-a, -w),
            (-w, -w),
            (-w, -a),
        ]
    raise ValueError(f"no outline for shape {shape!r}")


def render(params: RenderParams) -> np.ndarray:
    """uint8 (64, 64, 3) image of the shape."""
    s = SUPERSAMPLE
    canvas = Image.new("RGB", (IMAGE_SIZE * s, IMAGE_SIZE * s), params.background)
    draw = ImageDraw.Draw(canvas)
    cx, cy = params.center[0] * s, params.center[1] * s
    if params.shape == "circle":
        r = params.radius * s
        draw.ellipse((cx - r, cy - r, cx + r, cy + r), fill=params.fill)
    else:
        cos, sin = math.cos(params.rotation), math.sin(params.rotation)
        points = [
            (cx + s * (x * cos - y * sin), cy + s * (x * sin + y * cos))
            for x, y in _outline(params.shape, params.radius)
        ]
        draw.polygon(points, fill=params.fill)
    return np.array(canvas.reduce(s))  # a writable copy


def render_attributes(attrs: Attributes, rng: np.random.Generator) -> np.ndarray:
    """uint8 (64, 64, 3) image of a complete attribute record, with variation drawn from rng."""
    return render(draw_params(attrs, rng))
