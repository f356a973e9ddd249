"""Randomness keyed by where it is used, so any step of any run can be replayed alone."""

from __future__ import annotations

import hashlib

import torch


def keyed_generator(*key: object) -> torch.Generator:
    """A CPU generator owned by `key` (e.g. (seed, stage, step) or (seed, step, rank, stream)): a resumed run
    draws exactly what an uninterrupted one drew, with no RNG state to save."""
    digest = hashlib.blake2b("/".join(str(part) for part in key).encode(), digest_size=8).digest()
    return torch.Generator(device="cpu").manual_seed(int.from_bytes(digest, "little") & ((1 << 63) - 1))
