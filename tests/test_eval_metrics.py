"""FID, precision/recall/density/coverage, prompt accuracy and spread, on inputs whose answers are known."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from scott.eval.diversity import prdc
from scott.eval.fid import fid, frechet_distance, gaussian_stats
from scott.eval.prompt_accuracy import prompt_accuracy
from scott.eval.spread import format_spread, mean_std, spread


def test_frechet_distance_matches_the_closed_form():
    rng = np.random.default_rng(0)
    d = 6
    # Non-commuting covariances: the closed form for diagonal ones would not catch a wrong matrix root.
    a, b = rng.normal(size=(d, d)), rng.normal(size=(d, d))
    s1, s2 = a @ a.T + np.eye(d), b @ b.T + np.eye(d)
    mu1, mu2 = rng.normal(size=d), rng.normal(size=d)
    # Reference: tr((S1 S2)^(1/2)) from the eigenvalues of S1 S2 (real, positive for SPD matrices).
    tr_covmean = np.sqrt(np.linalg.eigvals(s1 @ s2).real).sum()
    expected = ((mu1 - mu2) ** 2).sum() + np.trace(s1) + np.trace(s2) - 2 * tr_covmean
    assert frechet_distance(mu1, s1, mu2, s2) == pytest.approx(expected, rel=1e-9)
    assert frechet_distance(mu1, s1, mu1, s1) == pytest.approx(0.0, abs=1e-9)


def test_fid_of_samples():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(20_000, 8))
    y = rng.normal(size=(20_000, 8))
    assert fid(x, x) == pytest.approx(0.0, abs=1e-8)
    assert fid(x, y) < 0.01
    # N(0, I) vs N(m, 4I): |m|^2 + D (1 + 4 - 2*2) = 4 + 8.
    shifted = 2.0 * rng.normal(size=(20_000, 8)) + np.r_[2.0, np.zeros(7)]
    assert fid(x, shifted) == pytest.approx(12.0, rel=0.03)
    mu, sigma = gaussian_stats(x)
    assert mu.shape == (8,) and sigma.shape == (8, 8)


def test_prdc_identical_sets_score_one():
    x = np.random.default_rng(2).normal(size=(500, 16))
    m = prdc(x, x, k=5)
    assert m["precision"] == 1.0 and m["recall"] == 1.0 and m["coverage"] == 1.0
    assert m["density"] == pytest.approx(1.0, abs=0.05)


def test_prdc_disjoint_clusters_score_zero():
    rng = np.random.default_rng(3)
    real = rng.normal(size=(400, 16))
    fake = rng.normal(size=(400, 16)) + 50.0
    m = prdc(real, fake, k=5)
    assert m == {"precision": 0.0, "recall": 0.0, "density": 0.0, "coverage": 0.0}


def test_prdc_mode_collapse_keeps_precision_loses_recall():
    rng = np.random.default_rng(4)
    real = np.concatenate([rng.normal(size=(300, 4)) + c for c in (0.0, 20.0, 40.0, 60.0)])
    collapsed = rng.normal(size=(1200, 4))  # every sample from the first of the four modes
    m = prdc(real, collapsed, k=5)
    assert m["precision"] > 0.9
    assert 0.15 < m["recall"] < 0.35 and 0.15 < m["coverage"] < 0.3


def test_prompt_accuracy_scores_only_named_attributes():
    targets = torch.tensor([[0, 1, -1, -1, 2], [3, -1, -1, -1, -1], [1, 2, 0, 4, 5]])
    predicted = torch.tensor([[0, 1, 2, 2, 2], [4, 0, 0, 0, 0], [1, 2, 0, 4, 3]])
    m = prompt_accuracy(predicted, targets)
    assert m["prompt_accuracy"] == pytest.approx(1 / 3)
    assert m["accuracy_shape"] == pytest.approx(2 / 3)
    assert m["accuracy_color"] == 1.0 and m["accuracy_size"] == 1.0 and m["accuracy_position"] == 1.0
    assert m["accuracy_background"] == 0.5
    only_shapes = prompt_accuracy(predicted[1:2], targets[1:2])
    assert set(only_shapes) == {"accuracy_shape", "prompt_accuracy"}


def test_spread():
    assert mean_std([1.0, 2.0, 3.0]) == pytest.approx((2.0, 1.0))
    assert mean_std([5.0]) == (5.0, 0.0)
    stats = spread(lambda seed: {"a": float(seed), "b": 1.0}, seeds=[1, 2, 3])
    assert stats["a"] == pytest.approx((2.0, 1.0)) and stats["b"] == (1.0, 0.0)
    assert format_spread(stats, digits=1) == {"a": "2.0 ± 1.0", "b": "1.0 ± 0.0"}
