"""evaluate(generate_fn, prompts, n_per_prompt): every quality metric of a text-to-image model on procedural prompts."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from scott.data.attributes import parse_caption
from scott.data.dataset import images_to_tensor
from scott.data.samples import sample_for_prompt
from scott.eval.classifier import AttributeClassifier, load_classifier
from scott.eval.diversity import prdc
from scott.eval.fid import fid
from scott.eval.prompt_accuracy import accuracy_within, every_named_right, prompt_accuracy

# (prompts, seeds) -> uint8 images (B, H, W, 3); one image per (prompt, seed) pair.
GenerateFn = Callable[[list[str], list[int]], np.ndarray]


def to_classifier_input(images: np.ndarray, size: int = 64) -> torch.Tensor:
    """uint8 (B, H, W, 3) -> float (B, 3, size, size) in [-1, 1], area-resized if the model made another size."""
    x = images_to_tensor(np.ascontiguousarray(images))
    if x.shape[-2:] != (size, size):
        x = F.interpolate(x, size=(size, size), mode="area")
    return x


def generate_images(generate_fn: GenerateFn, pairs: Sequence[tuple[str, int]], batch_size: int = 64) -> np.ndarray:
    """uint8 (len(pairs), H, W, 3): one image per (prompt, seed) pair, generated batch_size pairs at a time."""
    batches = []
    for start in range(0, len(pairs), batch_size):
        chunk = pairs[start : start + batch_size]
        images = np.asarray(generate_fn([p for p, _ in chunk], [s for _, s in chunk]))
        if images.dtype != np.uint8 or images.ndim != 4 or images.shape[0] != len(chunk) or images.shape[-1] != 3:
            raise ValueError(
                f"generate_fn must return uint8 (B, H, W, 3) with B={len(chunk)}, got {images.dtype} {images.shape}"
            )
        batches.append(images)
    return np.concatenate(batches)


def real_images(prompts: Sequence[str], n_per_prompt: int, start: int = 0, split: str = "reference") -> np.ndarray:
    """Rendered images of each prompt (indices start .. start+n-1), prompt-major like evaluate's generated ones."""
    records = [parse_caption(p) for p in prompts]
    return np.stack([sample_for_prompt(r, start + i, split).image for r in records for i in range(n_per_prompt)])


def feature_metrics(
    real: np.ndarray, fake: np.ndarray, k: int = 5, n_per_prompt: int | None = None
) -> dict[str, float]:
    """FID and pooled precision/recall/density/coverage of fake vs real features (both prompt-major).

    With n_per_prompt > k, also the per-prompt means ("*_per_prompt"): diversity within each prompt.
    """
    out = {"fid": fid(real, fake), **prdc(real, fake, k)}
    if n_per_prompt is not None and n_per_prompt > k and len(real) == len(fake):
        groups = [
            prdc(r, f, k)
            for r, f in zip(
                np.split(real, len(real) // n_per_prompt), np.split(fake, len(fake) // n_per_prompt), strict=True
            )
        ]
        for key in groups[0]:
            out[f"{key}_per_prompt"] = float(np.mean([g[key] for g in groups]))
    return out


def evaluate(
    generate_fn: GenerateFn,
    prompts: Sequence[str],
    n_per_prompt: int,
    classifier: AttributeClassifier | None = None,
    *,
    seed: int = 0,
    batch_size: int = 64,
    k: int = 5,
    real_floor: bool = True,
) -> dict:
    """Generate n_per_prompt images per prompt (seeds seed .. seed+n_per_prompt-1) and score them.

    Metrics: prompt accuracy (every attribute the prompt names, read back by the classifier), per-attribute
    accuracy and colour accuracy on each background; FID, precision/recall and density/coverage in the classifier's
    feature space, and fd_low (the Fréchet distance of its low-level statistics, which sees blur, noise and colour),
    against rendered images of the same prompts. With real_floor, the same metrics for a second real
    set against the first ("real_*"): the values a perfect generator would get at this sample count.
    """
    if n_per_prompt < 1 or not prompts:
        raise ValueError("need at least one prompt and n_per_prompt >= 1")
    classifier = classifier or load_classifier()
    size = classifier.config.image_size
    targets = torch.tensor([parse_caption(p).labels() for p in prompts for _ in range(n_per_prompt)])
    pairs = [(p, seed + i) for p in prompts for i in range(n_per_prompt)]

    t0 = time.perf_counter()
    fake = to_classifier_input(generate_images(generate_fn, pairs, batch_size), size)
    generate_s = time.perf_counter() - t0

    fake_pred, fake_feat = classifier.predict(fake)
    real = to_classifier_input(real_images(prompts, n_per_prompt), size)
    real_pred, real_feat = classifier.predict(real)
    real_low = classifier.low_level_features(real).numpy()
    right = every_named_right(fake_pred, targets).double()
    out: dict = {
        "n_prompts": len(prompts),
        "n_per_prompt": n_per_prompt,
        "n_images": len(pairs),
        "generate_seconds": generate_s,
        **prompt_accuracy(fake_pred, targets),
        **accuracy_within(fake_pred, targets, "color", "background"),
        **feature_metrics(real_feat.numpy(), fake_feat.numpy(), k, n_per_prompt),
        "fd_low": fid(real_low, classifier.low_level_features(fake).numpy()),
        # The classifier's own accuracy on real images of these prompts: the ceiling of prompt_accuracy.
        "real_prompt_accuracy": prompt_accuracy(real_pred, targets)["prompt_accuracy"],
        # One value per prompt, in prompt order: what a paired test across models compares.
        "per_prompt": {"prompt_accuracy": right.reshape(len(prompts), n_per_prompt).mean(dim=1).tolist()},
    }
    if real_floor:
        floor_x = to_classifier_input(real_images(prompts, n_per_prompt, start=n_per_prompt), size)
        _, floor_feat = classifier.predict(floor_x)
        floor = feature_metrics(real_feat.numpy(), floor_feat.numpy(), k, n_per_prompt)
        floor["fd_low"] = fid(real_low, classifier.low_level_features(floor_x).numpy())
        out.update({f"real_{key}": value for key, value in floor.items()})
    return out


def colour_by_background(
    generate_fn: GenerateFn,
    prompts: dict[str, list[str]],
    n_per_prompt: int,
    classifier: AttributeClassifier | None = None,
) -> dict[str, float]:
    """Colour accuracy on each background: prompts maps a background to its captions (prompts_by_background),
    n_per_prompt seeds each. A defect on one background hides in the overall accuracy."""
    classifier = classifier or load_classifier()
    return {
        bg: evaluate(generate_fn, captions, n_per_prompt, classifier, real_floor=False)["accuracy_color"]
        for bg, captions in prompts.items()
    }
