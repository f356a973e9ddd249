"""Training data specs -> (image in [-1, 1], caption) items.

Three kinds of spec:
- `procedural` or `procedural:N`: the first N samples of scott.data's train split (train caption policy);
- a folder of images, each with a caption file of the same stem (`cat.png` + `cat.txt`);
- webdataset tar shards (`.../shard-{000..099}.tar`, a single `.tar`, `wds:PATTERN`, or a folder holding
  only .tar files), each sample an image (jpg/png/webp) plus a `txt` caption, streamed.

The first two are finite and get encoded once into a latent cache (scott.distill.latents); shards are
streamed and encoded on the fly, as at real scale they do not fit a cache.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from scott.images import images_to_tensor

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp")
DEFAULT_PROCEDURAL = 10_000


@dataclass(frozen=True)
class DataSpec:
    kind: str  # "procedural" | "folder" | "webdataset"
    count: int = 0  # procedural only
    path: Path | None = None  # folder only
    shards: tuple[str, ...] = ()  # webdataset only

    @property
    def finite(self) -> bool:
        return self.kind != "webdataset"

    def describe(self) -> str:
        if self.kind == "procedural":
            return f"procedural:{self.count}"
        if self.kind == "folder":
            return f"folder:{self.path}"
        return f"webdataset:{len(self.shards)} shards"


def parse_spec(spec: str) -> DataSpec:
    """Parse a --data value (see the module docstring)."""
    text = spec.strip()
    if text == "procedural" or text.startswith("procedural:"):
        _, _, count = text.partition(":")
        n = int(count) if count else DEFAULT_PROCEDURAL
        if n < 1:
            raise ValueError(f"procedural needs at least 1 sample, got {n}")
        return DataSpec("procedural", count=n)
    if text.startswith("wds:"):
        return DataSpec("webdataset", shards=_expand_shards(text[4:]))
    path = Path(text)
    if path.is_dir():
        tars = sorted(str(p) for p in path.glob("*.tar"))
        if tars and not any(p.suffix.lower() in IMAGE_SUFFIXES for p in path.iterdir()):
            return DataSpec("webdataset", shards=tuple(tars))
        return DataSpec("folder", path=path)
    if ".tar" in text:
        return DataSpec("webdataset", shards=_expand_shards(text))
    raise ValueError(f"data spec {spec!r} is not procedural[:N], a folder, or webdataset .tar shards")


def _expand_shards(pattern: str) -> tuple[str, ...]:
    import braceexpand  # a webdataset dependency

    shards = tuple(braceexpand.braceexpand(pattern))
    missing = [s for s in shards if "://" not in s and not Path(s).is_file()]
    if missing:
        raise FileNotFoundError(f"webdataset shards not found: {missing[:3]}{' ...' if len(missing) > 3 else ''}")
    return shards


# -- image preprocessing ---------------------------------------------------------------------------


def pil_to_tensor(image: Image.Image, resolution: int) -> torch.Tensor:
    """RGB, centre-cropped to a square, resized to resolution: float32 (3, R, R) in [-1, 1]."""
    image = image.convert("RGB")
    w, h = image.size
    side = min(w, h)
    left, top = (w - side) // 2, (h - side) // 2
    image = image.crop((left, top, left + side, top + side))
    if side != resolution:
        image = image.resize((resolution, resolution), Image.Resampling.BICUBIC)
    return images_to_tensor(np.asarray(image, dtype=np.uint8)[None])[0]


def resize_tensor(images: torch.Tensor, resolution: int) -> torch.Tensor:
    if images.shape[-1] == resolution and images.shape[-2] == resolution:
        return images
    return F.interpolate(images, size=(resolution, resolution), mode="bicubic", align_corners=False).clamp(-1, 1)


# -- finite sources ---------------------------------------------------------------------------------


def finite_items(spec: DataSpec, resolution: int, chunk: int = 64) -> Iterator[tuple[torch.Tensor, list[str]]]:
    """Chunks (images (n, 3, R, R) in [-1, 1], captions) of a finite source, in a fixed order."""
    if spec.kind == "procedural":
        from scott.data import TRAIN_CAPTIONS, sample

        for start in range(0, spec.count, chunk):
            samples = [sample("train", i, TRAIN_CAPTIONS) for i in range(start, min(start + chunk, spec.count))]
            images = images_to_tensor(np.stack([s.image for s in samples]))
            yield resize_tensor(images, resolution), [s.caption for s in samples]
        return
    if spec.kind == "folder":
        pairs = folder_pairs(Path(spec.path))  # type: ignore[arg-type]
        for start in range(0, len(pairs), chunk):
            part = pairs[start : start + chunk]
            images = [pil_to_tensor(Image.open(img), resolution) for img, _ in part]
            yield torch.stack(images), [txt.read_text().strip() for _, txt in part]
        return
    raise ValueError(f"{spec.kind} is not a finite source")


def folder_pairs(root: Path) -> list[tuple[Path, Path]]:
    """(image, caption file) pairs of a folder, sorted by name; an image without a caption is an error."""
    images = sorted(p for p in root.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not images:
        raise FileNotFoundError(f"{root} holds no images ({', '.join(IMAGE_SUFFIXES)})")
    missing = [p.name for p in images if not p.with_suffix(".txt").is_file()]
    if missing:
        raise FileNotFoundError(f"images without a caption .txt in {root}: {missing[:5]}")
    return [(p, p.with_suffix(".txt")) for p in images]


# -- streamed source ---------------------------------------------------------------------------------


def stream_items(
    spec: DataSpec, resolution: int, rank: int, world: int, seed: int
) -> Iterator[tuple[torch.Tensor, str]]:
    """(image (3, R, R), caption) forever from webdataset shards; each rank sees a disjoint part.

    With at least as many shards as ranks, ranks take disjoint shards (rank::world); with fewer, every
    rank reads all shards and keeps every world-th sample. Shard order is reshuffled each epoch from
    the seed, so a run is reproducible.
    """
    import webdataset as wds

    by_shard = len(spec.shards) >= world
    for epoch in range(1_000_000_000):
        shards = list(spec.shards)
        random.Random(seed * 1_000_003 + epoch).shuffle(shards)
        mine = shards[rank::world] if by_shard else shards
        dataset = (
            wds.WebDataset(
                mine, shardshuffle=False, nodesplitter=_all_urls, workersplitter=_all_urls, empty_check=False
            )
            .decode("pil")
            .to_tuple("jpg;jpeg;png;webp", "txt")
        )
        produced = False
        for i, (image, caption) in enumerate(dataset):
            if by_shard or i % world == rank:
                produced = True
                yield pil_to_tensor(image, resolution), str(caption).strip()
        if not produced and epoch == 0:
            raise ValueError(f"no (image, txt) samples for rank {rank} in {len(mine)} shard(s)")


def _all_urls(urls):  # the rank split above is explicit; stop webdataset from splitting again
    yield from urls
