"""Fixed prompt sets for evaluation."""

from __future__ import annotations

import numpy as np

from scott.data.attributes import BACKGROUNDS, Attributes, caption, parse_caption
from scott.data.splits import combinations


def eval_prompts(count: int | None = None, which: str = "heldout", seed: int = 0) -> list[str]:
    """Full captions of `count` distinct combinations ('heldout': never trained on; 'seen'; 'all'), fixed by seed.

    count=None returns every combination of the set, in a seed-fixed order.
    """
    combos = combinations(which)
    order = np.random.default_rng(seed).permutation(len(combos))
    if count is not None:
        if count > len(combos):
            raise ValueError(f"only {len(combos)} {which} combinations, asked for {count}")
        order = order[:count]
    return [caption(combos[i]) for i in order]


def partial_prompts(count: int, seed: int = 0, keep: tuple[str, ...] = ("color",)) -> list[str]:
    """Captions naming the shape plus only the `keep` attributes (e.g. "a red circle"): the open attributes are
    where a model must show diversity."""
    combos = combinations("all")
    rng = np.random.default_rng(seed)
    out: list[str] = []
    seen: set[str] = set()
    for i in rng.permutation(len(combos)):
        c = combos[i]
        text = caption(Attributes(shape=c.shape, **{k: getattr(c, k) for k in keep}))
        if text not in seen:
            seen.add(text)
            out.append(text)
        if len(out) == count:
            return out
    raise ValueError(f"only {len(out)} distinct prompts name {keep}; asked for {count}")


def prompts_by_background(per_background: int) -> dict[str, list[str]]:
    """The first `per_background` held-out captions (in eval_prompts' fixed order) on each background of the data:
    a balanced set for per-background claims (a random 50 holds ~8 per background)."""
    out: dict[str, list[str]] = {bg: [] for bg in BACKGROUNDS}
    for prompt in eval_prompts(None, "heldout"):
        bucket = out[parse_caption(prompt).background]
        if len(bucket) < per_background:
            bucket.append(prompt)
    short = {bg: len(ps) for bg, ps in out.items() if len(ps) < per_background}
    if short:
        raise ValueError(f"{per_background} prompts per background exceeds the held-out captions on {short}")
    return out
