"""(split, index) -> one sample, deterministically, with no state: any worker, shard or order gives the same one."""

from __future__ import annotations

import functools
import zlib
from dataclasses import dataclass

import numpy as np

from scott.data.attributes import ATTRIBUTE_NAMES, Attributes, caption
from scott.data.render import render_attributes
from scott.data.splits import Split, combinations, get_split


@dataclass(frozen=True)
class CaptionPolicy:
    """How much of its record a caption names.

    With probability full_prob the caption names every attribute; otherwise each attribute but the
    shape is dropped independently with probability drop_prob. A caption that omits an attribute
    still has an image with some value of it (drawn with the rest of the record), so a partial caption
    like "a red circle" denotes the whole distribution of red circles: this teaches the model the
    marginals that classifier-free guidance moves between, and gives diversity metrics spread to see.
    """

    full_prob: float = 1.0
    drop_prob: float = 0.5

    def __post_init__(self) -> None:
        if not (0.0 <= self.full_prob <= 1.0 and 0.0 <= self.drop_prob <= 1.0):
            raise ValueError(f"probabilities must lie in [0, 1], got {self}")


FULL_CAPTIONS = CaptionPolicy(full_prob=1.0)
# The recommended policy for training a generator: 60% full captions, the rest name about half.
TRAIN_CAPTIONS = CaptionPolicy(full_prob=0.6, drop_prob=0.5)


@dataclass(frozen=True)
class Sample:
    image: np.ndarray  # uint8 (64, 64, 3)
    caption: str
    attributes: Attributes  # complete: what the image shows
    prompt: Attributes  # what the caption names (attributes it omits are None)


def _rng(*key: int) -> np.random.Generator:
    return np.random.default_rng(list(key))


def sample(split: str | Split, index: int, captions: CaptionPolicy = FULL_CAPTIONS) -> Sample:
    """The index-th sample of a split. The image does not depend on the caption policy."""
    if index < 0:
        raise ValueError(f"sample index must be >= 0, got {index}")
    s = get_split(split)
    combos = combinations(s.combos)
    rng = _rng(s.stream, index)
    attrs = combos[int(rng.integers(len(combos)))]
    image = render_attributes(attrs, rng)
    prompt = omit_attributes(attrs, captions, rng)  # drawn after the image: the image ignores the policy
    return Sample(image=image, caption=caption(prompt), attributes=attrs, prompt=prompt)


def omit_attributes(attrs: Attributes, captions: CaptionPolicy, rng: np.random.Generator) -> Attributes:
    """The record a caption of this policy names (always the shape)."""
    if rng.random() < captions.full_prob:
        return attrs
    keep = rng.random(len(ATTRIBUTE_NAMES)) >= captions.drop_prob
    return attrs.restrict(tuple(bool(k) for k in keep))


@functools.lru_cache(maxsize=4096)
def _matching(prompt: Attributes, which: str) -> tuple[Attributes, ...]:
    named = {n: getattr(prompt, n) for n in ATTRIBUTE_NAMES if getattr(prompt, n) is not None}
    matches = tuple(c for c in combinations(which) if all(getattr(c, n) == v for n, v in named.items()))
    if not matches:
        raise ValueError(f"no {which} combination matches {prompt}")
    return matches


def prompt_key(text: str) -> int:
    """A stable 32-bit key of a prompt (Python's hash() is salted per process)."""
    return zlib.crc32(text.encode("utf-8"))


def sample_for_prompt(prompt: Attributes, index: int, split: str | Split = "reference") -> Sample:
    """The index-th real image of a prompt: open attributes drawn uniformly from the split's matching combinations.

    Deterministic in (prompt, index, split) alone, so every evaluation compares against the same real images.
    """
    s = get_split(split)
    text = caption(prompt)
    rng = _rng(s.stream, prompt_key(text), index)
    matches = _matching(prompt, s.combos)
    attrs = matches[int(rng.integers(len(matches)))]
    return Sample(image=render_attributes(attrs, rng), caption=text, attributes=attrs, prompt=prompt)
