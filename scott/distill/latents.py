"""Images and captions -> the trainer's batches of VAE latents and text embeddings.

The text encoder and VAE are frozen, so for a finite data set both are run once and cached under <out>/cache as
the training kit's LatentCache (a VAE encode at batch 32 costs ~0.1 s on 2 CPU cores; a step should not pay it).
The cache keeps the VAE posterior's mean and std and draws z0 = mean + std * noise per step, as
training on `latent_dist.sample()` would; captions are deduplicated (procedural data has few distinct
captions), so the cache holds one embedding per distinct caption.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import torch

from scott.distill.data import DataSpec, finite_items, stream_items
from scott.models import ModelBundle
from scott.tokenizer import tokenize
from scott.train.latent_cache import LatentCache, encode_posterior
from scott.train.rng import keyed_generator


@dataclass
class TrainBatch:
    latents: torch.Tensor  # z0, float32 (B, C, h, w), already multiplied by the VAE scaling factor
    text: torch.Tensor  # (B, L, D) text encoder hidden states


class Encoders:
    """The teacher's frozen tokenizer, text encoder and VAE encoder."""

    def __init__(self, bundle: ModelBundle, device: torch.device, dtype: torch.dtype = torch.float32) -> None:
        self.tokenizer = bundle.tokenizer
        self.text_encoder = bundle.text_encoder.to(device, dtype).eval().requires_grad_(False)
        self.vae = bundle.vae.to(device, dtype).eval().requires_grad_(False)
        self.device, self.dtype = device, dtype

    @torch.no_grad()
    def text(self, captions: list[str]) -> torch.Tensor:
        ids = tokenize(self.tokenizer, captions)
        return self.text_encoder(ids.to(self.device))[0].float()

    def images(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(posterior mean, posterior std), both times the scaling factor, float32."""
        return encode_posterior(self.vae, images)


def build_cache(spec: DataSpec, encoders: Encoders, resolution: int, chunk: int = 32) -> LatentCache:
    """The data set's latents, with one text embedding per distinct caption (procedural data has few) and each
    item's index into them (extras "embeddings", "caption_index")."""
    means, stds, index, captions, texts_seen = [], [], [], {}, []
    for images, texts in finite_items(spec, resolution, chunk):
        mean, std = encoders.images(images)
        means.append(mean.cpu())
        stds.append(std.cpu())
        index.extend(captions.setdefault(t, len(captions)) for t in texts)
        texts_seen.extend(texts)
    unique = list(captions)
    embeddings = torch.cat([encoders.text(unique[i : i + 64]).cpu() for i in range(0, len(unique), 64)])
    extras = {"embeddings": embeddings, "caption_index": torch.tensor(index, dtype=torch.long)}
    return LatentCache(torch.cat(means), torch.cat(stds), texts_seen, extras)


class CachedBatches:
    """The trainer's batches from a LatentCache built by build_cache."""

    def __init__(self, cache: LatentCache) -> None:
        self.cache = cache
        self.embeddings, self.caption_index = cache.extras["embeddings"], cache.extras["caption_index"]

    def batch(self, seed: int, step: int, rank: int, world: int, batch_size: int) -> TrainBatch:
        """Rank `rank`'s share of global batch `step`: epochs of seeded permutations, identical for any world size
        split (the global batch is the same; ranks take consecutive slices)."""
        n = len(self.cache)
        start = (step * world + rank) * batch_size
        positions = torch.arange(start, start + batch_size)
        indices = torch.empty(batch_size, dtype=torch.long)
        for epoch in positions.div(n, rounding_mode="floor").unique().tolist():
            perm = torch.randperm(n, generator=keyed_generator(seed, epoch, 0, 99))
            mask = positions.div(n, rounding_mode="floor") == epoch
            indices[mask] = perm[positions[mask] % n]
        latents = self.cache.z0(indices, keyed_generator(seed, step, rank, 1))
        return TrainBatch(latents=latents, text=self.embeddings[self.caption_index[indices]])


def cache_path(out: Path, spec: DataSpec, teacher: Path, resolution: int) -> Path:
    """<out>/cache/<kind>-<key>.pt, keyed by the spec, the resolution and the teacher's VAE/text encoder
    files."""
    files = sorted(p for sub in ("vae", "text_encoder") for p in (teacher / sub).glob("*") if p.is_file())
    stamp = [(p.name, p.stat().st_size, p.stat().st_mtime_ns) for p in files]
    key = json.dumps([spec.describe(), resolution, str(teacher.resolve()), stamp])
    return out / "cache" / f"{spec.kind}-{hashlib.sha1(key.encode()).hexdigest()[:16]}.pt"


class StreamedBatches:
    """Batches from webdataset shards, encoded on the fly with the frozen VAE and text encoder."""

    def __init__(self, spec: DataSpec, encoders: Encoders, resolution: int, seed: int, rank: int, world: int):
        self.items: Iterator[tuple[torch.Tensor, str]] = stream_items(spec, resolution, rank, world, seed)
        self.encoders, self.seed, self.rank = encoders, seed, rank

    def batch(self, seed: int, step: int, rank: int, world: int, batch_size: int) -> TrainBatch:
        pairs = [next(self.items) for _ in range(batch_size)]
        mean, std = self.encoders.images(torch.stack([p[0] for p in pairs]))
        noise = torch.randn(mean.shape, generator=keyed_generator(seed, step, rank, 1)).to(mean.device)
        return TrainBatch(latents=mean + std * noise, text=self.encoders.text([p[1] for p in pairs]))
