"""Procedural text-image data for the embedded model: one shape on a flat background, captioned by its attributes."""

from scott.data.attributes import ATTRIBUTE_NAMES, NUM_CLASSES, VOCAB, Attributes, caption, parse_caption
from scott.data.dataset import Batch, CachedDataset, ProceduralDataset, collate_samples, images_to_tensor, make_batch
from scott.data.samples import (
    FULL_CAPTIONS,
    TRAIN_CAPTIONS,
    CaptionPolicy,
    Sample,
    sample,
    sample_for_prompt,
)
from scott.data.splits import SPLITS, Split, combinations, get_split, is_heldout

__all__ = [
    "ATTRIBUTE_NAMES",
    "FULL_CAPTIONS",
    "NUM_CLASSES",
    "SPLITS",
    "TRAIN_CAPTIONS",
    "VOCAB",
    "Attributes",
    "Batch",
    "CachedDataset",
    "CaptionPolicy",
    "ProceduralDataset",
    "Sample",
    "Split",
    "caption",
    "collate_samples",
    "combinations",
    "get_split",
    "images_to_tensor",
    "is_heldout",
    "make_batch",
    "parse_caption",
    "sample",
    "sample_for_prompt",
]
