"""Which attribute combinations and which random streams belong to training and to evaluation.

Two kinds of held-out data:
- held-out prompts: a fixed ~10% of all complete attribute combinations is never rendered for training
  (every single attribute value and every pair of values still occurs in training, so these test
  composition, not unseen words);
- held-out seeds: each split draws from its own random stream, so no image of an evaluation split is
  ever a training image, even for a prompt that training has seen.
"""

from __future__ import annotations

import functools
import itertools
from dataclasses import dataclass

import numpy as np

from scott.data.attributes import ATTRIBUTE_NAMES, VOCAB, Attributes

HELDOUT_FRACTION = 0.1
_HELDOUT_SEED = 20250303  # fixed forever: changing it changes which prompts are held out


@functools.cache
def all_combinations() -> tuple[Attributes, ...]:
    """Every valid complete record (the background never has the shape's colour name), in a fixed order."""
    combos = []
    for values in itertools.product(*(VOCAB[name] for name in ATTRIBUTE_NAMES)):
        record = dict(zip(ATTRIBUTE_NAMES, values, strict=True))
        if record["color"] != record["background"]:
            combos.append(Attributes(**record))
    return tuple(combos)


@functools.cache
def _heldout_mask() -> np.ndarray:
    combos = all_combinations()
    order = np.random.default_rng(_HELDOUT_SEED).permutation(len(combos))
    mask = np.zeros(len(combos), dtype=bool)
    mask[order[: round(HELDOUT_FRACTION * len(combos))]] = True
    return mask


@functools.cache
def combinations(which: str) -> tuple[Attributes, ...]:
    """'seen' (training prompts), 'heldout' (never trained on) or 'all'."""
    combos, mask = all_combinations(), _heldout_mask()
    if which == "all":
        return combos
    if which == "seen":
        return tuple(c for c, held in zip(combos, mask, strict=True) if not held)
    if which == "heldout":
        return tuple(c for c, held in zip(combos, mask, strict=True) if held)
    raise ValueError(f"unknown combination set {which!r}; expected 'seen', 'heldout' or 'all'")


def is_heldout(attrs: Attributes) -> bool:
    """Whether a complete record is one of the held-out prompts."""
    return attrs in set(combinations("heldout"))


@dataclass(frozen=True)
class Split:
    """A set of attribute combinations plus a private random stream: (split, index) -> one sample."""

    name: str
    combos: str  # 'seen', 'heldout' or 'all'
    stream: int  # the SeedSequence key that keeps this split's images apart from every other split's


SPLITS: dict[str, Split] = {
    s.name: s
    for s in (
        Split("train", "seen", 0),  # the generator's training data
        Split("val", "seen", 1),  # seen prompts, unseen images
        Split("test", "heldout", 2),  # unseen prompts, unseen images
        Split("classifier_train", "all", 3),  # the evaluation classifier sees every combination
        Split("classifier_val", "all", 4),
        Split("reference", "all", 5),  # real images for the metrics of evaluate()
    )
}


def get_split(split: str | Split) -> Split:
    if isinstance(split, Split):
        return split
    try:
        return SPLITS[split]
    except KeyError:
        raise ValueError(f"unknown split {split!r}; expected one of {sorted(SPLITS)}") from None
