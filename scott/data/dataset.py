"""Torch views of the procedural data: a map-style Dataset, whole batches, and a cached tensor dataset."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from scott.data.attributes import Attributes
from scott.data.samples import FULL_CAPTIONS, TRAIN_CAPTIONS, CaptionPolicy, Sample, sample
from scott.data.splits import Split, get_split
from scott.images import images_to_tensor


@dataclass
class Batch:
    images: torch.Tensor  # float32 (B, 3, 64, 64) in [-1, 1]
    captions: list[str]
    labels: torch.Tensor  # int64 (B, 5): class index per attribute of the image (ATTRIBUTE_NAMES order)
    named: torch.Tensor  # bool (B, 5): which attributes the caption names
    attributes: list[Attributes]  # complete records of the images

    def __len__(self) -> int:
        return len(self.captions)


def collate_samples(samples: list[Sample]) -> Batch:
    return Batch(
        images=images_to_tensor(np.stack([s.image for s in samples])),
        captions=[s.caption for s in samples],
        labels=torch.tensor([s.attributes.labels() for s in samples], dtype=torch.int64),
        named=torch.tensor([s.prompt.named() for s in samples], dtype=torch.bool),
        attributes=[s.attributes for s in samples],
    )


def make_batch(split: str | Split, start: int, count: int, captions: CaptionPolicy = FULL_CAPTIONS) -> Batch:
    """Samples start .. start+count-1 of a split, as one batch."""
    return collate_samples([sample(split, i, captions) for i in range(start, start + count)])


class ProceduralDataset(Dataset):
    """Map-style dataset over indices [offset, offset + length) of a split.

    Every index is an independent random draw, so a sequential sampler is as good as a shuffled one;
    DataLoader workers and DistributedSampler shards see exactly the samples they would see alone.
    Items are dicts (image float (3, 64, 64) in [-1, 1], caption, labels (5,), named (5,)) so that the
    default collate_fn batches them.
    """

    def __init__(
        self,
        split: str | Split = "train",
        length: int = 1_000_000,
        offset: int = 0,
        captions: CaptionPolicy = TRAIN_CAPTIONS,
    ) -> None:
        self.split = get_split(split)
        self.length = length
        self.offset = offset
        self.captions = captions

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, i: int) -> dict:
        if not 0 <= i < self.length:
            raise IndexError(i)
        s = sample(self.split, self.offset + i, self.captions)
        return {
            "image": images_to_tensor(s.image[None])[0],
            "caption": s.caption,
            "labels": torch.tensor(s.attributes.labels(), dtype=torch.int64),
            "named": torch.tensor(s.prompt.named(), dtype=torch.bool),
        }


class CachedDataset(Dataset):
    """Pre-rendered samples held as one uint8 tensor (12 KiB per image), for training loops that outrun rendering."""

    def __init__(self, images: torch.Tensor, captions: list[str], labels: torch.Tensor, named: torch.Tensor) -> None:
        if not len(images) == len(captions) == len(labels) == len(named):
            raise ValueError("images, captions, labels and named must have the same length")
        self.images, self.captions, self.labels, self.named = images, captions, labels, named

    @classmethod
    def build(
        cls, split: str | Split, count: int, start: int = 0, captions: CaptionPolicy = TRAIN_CAPTIONS
    ) -> CachedDataset:
        samples = [sample(split, i, captions) for i in range(start, start + count)]
        return cls(
            images=torch.from_numpy(np.stack([s.image for s in samples])),
            captions=[s.caption for s in samples],
            labels=torch.tensor([s.attributes.labels() for s in samples], dtype=torch.int64),
            named=torch.tensor([s.prompt.named() for s in samples], dtype=torch.bool),
        )

    def save(self, path: str | Path) -> None:
        torch.save({"images": self.images, "captions": self.captions, "labels": self.labels, "named": self.named}, path)

    @classmethod
    def load(cls, path: str | Path) -> CachedDataset:
        state = torch.load(path, weights_only=True)
        return cls(state["images"], state["captions"], state["labels"], state["named"])

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> dict:
        return {
            "image": images_to_tensor(self.images[i : i + 1])[0],
            "caption": self.captions[i],
            "labels": self.labels[i],
            "named": self.named[i],
        }

    def batch(self, indices: torch.Tensor | slice) -> tuple[torch.Tensor, torch.Tensor]:
        """(images float (B, 3, 64, 64) in [-1, 1], labels (B, 5)) without per-item Python overhead."""
        return images_to_tensor(self.images[indices]), self.labels[indices]
