"""benchmarks/shape_diagnosis.py: the latent blur and the per-size shape accuracy it reports, on real components."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from benchmark_loader import load_benchmark

from scott.data.attributes import SHAPES, SIZES, parse_caption
from scott.eval.classifier import load_classifier
from scott.eval.evaluate import real_images, to_classifier_input
from scott.eval.prompts import eval_prompts


@pytest.fixture(scope="module")
def diagnosis():
    return load_benchmark("shape_diagnosis")


def test_gaussian_blur_keeps_flat_latents_and_mass_and_spreads_a_point(diagnosis) -> None:
    flat = torch.full((1, 4, 16, 16), 0.7)
    assert torch.allclose(diagnosis.gaussian_blur(flat, 1.0), flat)
    point = torch.zeros(1, 4, 16, 16)
    point[..., 8, 8] = 1.0
    blurred = diagnosis.gaussian_blur(point, 1.0)
    assert torch.allclose(blurred.sum(dim=(2, 3)), torch.ones(1, 4))
    assert blurred[..., 8, 8].max() < 0.2 and blurred[..., 8, 9].min() > 0.05  # spread to the neighbours
    assert torch.allclose(diagnosis.gaussian_blur(point, 0.05), point, atol=1e-6)  # a tiny σ changes nothing


def test_shape_by_size_reads_real_shapes_right_and_wrong_labels_as_wrong(diagnosis) -> None:
    prompts = eval_prompts(12, "heldout")
    targets = np.array([parse_caption(p).labels() for p in prompts for _ in range(2)])
    images = to_classifier_input(real_images(prompts, 2))
    classifier = load_classifier()
    right = diagnosis.shape_by_size(classifier, images, targets)
    present = {SIZES[i] for i in np.unique(targets[:, diagnosis.SIZE])}
    assert set(right) == present | {"all"}
    assert right["all"] == 1.0
    shifted = targets.copy()
    shifted[:, diagnosis.SHAPE] = (shifted[:, diagnosis.SHAPE] + 1) % len(SHAPES)  # every shape label wrong, sizes kept
    assert diagnosis.shape_by_size(classifier, images, shifted)["all"] == 0.0
