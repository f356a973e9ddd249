"""benchmarks/rotation_probe.py: limiting the data's rotation changes the rotation and nothing else."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
from benchmark_loader import load_benchmark

import scott.data.render as render
from scott.data.samples import TRAIN_CAPTIONS, sample


@pytest.fixture
def probe(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(render, "draw_params", render.draw_params)  # restored after the test
    return load_benchmark("rotation_probe")


def _drawn(count: int) -> list[render.RenderParams]:
    seen: list[render.RenderParams] = []
    full_render = render.render

    def spy(params: render.RenderParams) -> np.ndarray:
        seen.append(params)
        return full_render(params)

    render.render = spy
    try:
        images = [sample("train", i, TRAIN_CAPTIONS).image for i in range(count)]
    finally:
        render.render = full_render
    assert len(images) == len(seen) == count
    return seen


def test_limit_rotation_keeps_every_other_draw_and_bounds_the_angle(probe) -> None:
    full = _drawn(200)
    probe.limit_rotation(15.0)
    limited = _drawn(200)
    angles = np.degrees([p.rotation for p in limited])
    assert angles.min() >= -15.0 and angles.max() <= 15.0
    assert angles.min() < -10.0 and angles.max() > 10.0  # spread over the range, not collapsed to 0
    assert np.degrees([p.rotation for p in full]).max() > 180.0  # the data's own rotations are full turns
    for a, b in zip(full, limited, strict=True):
        assert dataclasses.replace(b, rotation=a.rotation) == a
        assert math.isclose(b.rotation, (2 * a.rotation / (2 * math.pi) - 1) * math.radians(15.0))
