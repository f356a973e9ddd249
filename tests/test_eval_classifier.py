"""The attribute classifier (a quick training run, save/load) and evaluate() end to end with known generators."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from safetensors import safe_open

from scott.data import VOCAB, CachedDataset, caption, parse_caption, sample_for_prompt
from scott.eval.classifier import AttributeClassifier, ClassifierConfig, load_classifier
from scott.eval.evaluate import evaluate, real_images
from scott.eval.generators import pipeline_generate_fn
from scott.eval.prompts import eval_prompts, partial_prompts
from scott.eval.train_classifier import TrainConfig, accuracy, train_classifier

SMALL = ClassifierConfig(stem=8, channels=(16, 32, 32, 64), depths=(1, 1, 1, 1), hidden=64, feature_dim=32)


@pytest.fixture(scope="module")
def quick_run() -> tuple[AttributeClassifier, dict]:
    cfg = TrainConfig(steps=40, batch_size=32, train_images=1000, val_images=200, lr=3e-3)
    return train_classifier(cfg, SMALL)


@pytest.fixture(scope="module")
def shipped() -> AttributeClassifier:
    return load_classifier()  # models/classifier, trained by scott.eval.train_classifier


@pytest.fixture(scope="module")
def val_set() -> tuple[torch.Tensor, torch.Tensor]:
    return CachedDataset.build("classifier_val", 800).batch(slice(None))


def test_quick_training_reduces_the_loss(quick_run):
    # A budget this small only checks the wiring (labels, heads, optimizer); reaching high accuracy takes ~1000
    # steps, too slow for a unit test on 2 cores, so the shipped classifier's accuracy is checked below instead.
    report = quick_run[1]
    assert report["loss_end"] < 0.9 * report["loss_start"], report  # seeded: 10.3 -> 8.6 here
    assert set(report["val_accuracy"]) == {"shape", "color", "size", "position", "background", "all"}


def test_save_and_load_in_fp16(quick_run, val_set, tmp_path):
    model = quick_run[0]
    model.save(tmp_path / "clf")
    loaded = load_classifier(tmp_path / "clf")
    assert loaded.config == SMALL
    with safe_open(tmp_path / "clf" / "model.safetensors", "pt") as f:
        dtypes = {f.get_tensor(name).dtype for name in f.keys()}  # noqa: SIM118 (safe_open is not a dict)
    assert dtypes == {torch.float16, torch.int64}  # weights in fp16; BatchNorm's step counters stay integers
    images, _ = val_set
    p32, f32 = model.predict(images)
    p16, f16 = loaded.predict(images)
    assert f16.shape == (len(images), SMALL.feature_dim)
    assert (p32 == p16).float().mean() > 0.99
    assert torch.allclose(f32, f16, atol=0.05 * f32.abs().max().item())


def test_shipped_classifier_reads_every_attribute(shipped, val_set):
    acc = accuracy(shipped, *val_set)
    assert min(acc.values()) >= 0.98, acc
    assert shipped.features(val_set[0][:4]).shape == (4, shipped.config.feature_dim)


def _render(split: str):
    def generate(prompts: list[str], seeds: list[int]) -> np.ndarray:
        return np.stack(
            [sample_for_prompt(parse_caption(p), s, split).image for p, s in zip(prompts, seeds, strict=True)]
        )

    return generate


def test_evaluate_real_images_score_like_the_classifier(shipped):
    prompts = eval_prompts(20) + partial_prompts(5)
    n = 12
    m = evaluate(_render("classifier_val"), prompts, n, shipped, seed=0)
    # Prompt accuracy of real images is the classifier's accuracy on them, computed directly.
    direct = torch.tensor([parse_caption(p).labels() for p in prompts for _ in range(n)])
    images = np.stack(
        [sample_for_prompt(parse_caption(p), i, "classifier_val").image for p in prompts for i in range(n)]
    )
    pred, _ = shipped.predict(torch.as_tensor(images).permute(0, 3, 1, 2).float() / 127.5 - 1)
    named = direct >= 0
    assert m["prompt_accuracy"] == pytest.approx(float(((pred == direct) | ~named).all(1).float().mean()))
    assert m["prompt_accuracy"] > 0.95 and m["real_prompt_accuracy"] > 0.95
    # Real images of the same prompts score like the real-vs-real floor.
    assert m["fid"] < 2 * m["real_fid"] + 1.0
    assert m["recall"] > 0.8 and m["coverage"] > 0.8 and m["precision"] > 0.8
    assert m["n_images"] == 25 * n


def test_evaluate_separates_wrong_and_collapsed_generators(shipped):
    prompts = eval_prompts(20)
    n = 12
    real = evaluate(_render("classifier_val"), prompts, n, shipped, real_floor=False)

    def wrong_colour(prompts: list[str], seeds: list[int]) -> np.ndarray:
        swapped = []
        for p in prompts:
            a = parse_caption(p)
            other = next(c for c in VOCAB["color"] if c not in (a.color, a.background))
            swapped.append(caption(dataclasses.replace(a, color=other)))
        return _render("classifier_val")(swapped, seeds)

    def collapsed(prompts: list[str], seeds: list[int]) -> np.ndarray:
        return _render("classifier_val")(prompts, [0] * len(seeds))

    wrong = evaluate(wrong_colour, prompts, n, shipped, real_floor=False)
    assert wrong["accuracy_color"] < 0.2 and wrong["accuracy_shape"] > 0.9
    assert wrong["fid"] > 10 * real["fid"] + 1.0
    same = evaluate(collapsed, prompts, n, shipped, real_floor=False)
    assert same["prompt_accuracy"] > 0.9  # right attributes ...
    assert same["recall_per_prompt"] < 0.5 * real["recall_per_prompt"]  # ... but no diversity
    assert same["coverage"] < 0.5 * real["coverage"]


def test_evaluate_a_served_pipeline(shipped, tiny_pipeline):
    """The call the eval CLI makes: a real (random-weight) pipeline behind generate_fn."""
    prompts = eval_prompts(4)
    m = evaluate(pipeline_generate_fn(tiny_pipeline, steps=1), prompts, 6, shipped, batch_size=8)
    assert m["n_images"] == 24 and 0.0 <= m["prompt_accuracy"] <= 1.0
    assert np.isfinite(m["fid"]) and m["fid"] > m["real_fid"]


def test_real_images_are_prompt_major():
    prompts = eval_prompts(3)
    images = real_images(prompts, 2)
    assert images.shape == (6, 64, 64, 3)
    assert np.array_equal(images[2], sample_for_prompt(parse_caption(prompts[1]), 0).image)
