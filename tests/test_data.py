"""The procedural dataset: determinism, captions <-> attributes, held-out prompts, images that show their captions."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader, Subset

from scott.data import (
    ATTRIBUTE_NAMES,
    FULL_CAPTIONS,
    TRAIN_CAPTIONS,
    VOCAB,
    Attributes,
    CachedDataset,
    CaptionPolicy,
    ProceduralDataset,
    caption,
    combinations,
    is_heldout,
    make_batch,
    parse_caption,
    sample,
    sample_for_prompt,
)
from scott.data.render import BACKGROUND_RGB, REGION_CENTERS, SHAPE_RGB
from scott.data.splits import SPLITS


def test_sample_is_a_function_of_split_and_index():
    a, b = sample("train", 12345), sample("train", 12345)
    assert np.array_equal(a.image, b.image) and a.caption == b.caption and a.attributes == b.attributes
    assert a.image.dtype == np.uint8 and a.image.shape == (64, 64, 3)
    # Another index or another split is another image.
    assert not np.array_equal(a.image, sample("train", 12346).image)
    assert not np.array_equal(a.image, sample("val", 12345).image)


def test_images_do_not_depend_on_caption_policy():
    for i in range(20):
        full, partial = sample("train", i, FULL_CAPTIONS), sample("train", i, CaptionPolicy(full_prob=0.0, drop_prob=1))
        assert np.array_equal(full.image, partial.image) and full.attributes == partial.attributes
        assert partial.caption == f"a {full.attributes.shape}"


def test_dataloader_workers_and_shards_give_the_same_samples():
    ds = ProceduralDataset("train", length=24, offset=1000)
    with_workers = next(iter(DataLoader(ds, batch_size=24, num_workers=2)))
    reference = make_batch("train", 1000, 24, TRAIN_CAPTIONS)
    assert torch.equal(with_workers["image"], reference.images)
    assert with_workers["caption"] == reference.captions
    assert torch.equal(with_workers["labels"], reference.labels)
    assert torch.equal(with_workers["named"], reference.named)
    # A DDP-style shard (every other index) holds exactly those samples of the full set.
    shard = next(iter(DataLoader(Subset(ds, range(1, 24, 2)), batch_size=12)))
    assert torch.equal(shard["image"], reference.images[1::2])


def test_batch_format():
    b = make_batch("test", 0, 8)
    assert b.images.shape == (8, 3, 64, 64) and b.images.dtype == torch.float32
    assert b.images.min() >= -1.0 and b.images.max() <= 1.0
    assert b.labels.shape == (8, 5) and b.named.all()
    assert [Attributes.from_labels(row.tolist()) for row in b.labels] == b.attributes
    assert [parse_caption(c) for c in b.captions] == b.attributes


def test_caption_round_trip_for_every_combination_and_omission():
    combos = combinations("all")
    assert len(combos) == len(set(combos)) == 6075
    for c in combos:
        assert parse_caption(caption(c)) == c
    # Every pattern of omitted attributes, on a sample of records.
    for c in combos[::97]:
        for keep in itertools.product([True, False], repeat=len(ATTRIBUTE_NAMES)):
            partial = c.restrict(keep)
            assert parse_caption(partial.caption()) == partial
            assert Attributes.from_labels(partial.labels()) == partial
    assert parse_caption("A Large  red circle in the center left on a blue background.") == Attributes(
        "circle", "red", "large", "center left", "blue"
    )


@pytest.mark.parametrize(
    "text", ["a red dog", "a circle in the middle", "a circle on a purple background", "two circles", ""]
)
def test_parse_rejects_other_text(text):
    with pytest.raises(ValueError):
        parse_caption(text)


def test_invalid_records_are_rejected():
    with pytest.raises(ValueError):
        Attributes("circle", color="red", background="red")
    with pytest.raises(ValueError):
        Attributes("hexagon")


def test_heldout_prompts_never_appear_in_training():
    seen, held = set(combinations("seen")), set(combinations("heldout"))
    assert not seen & held and len(seen | held) == 6075
    assert 0.08 < len(held) / 6075 < 0.12
    train = [sample("train", i) for i in range(1500)]
    assert not any(is_heldout(s.attributes) for s in train)
    assert not {s.caption for s in train} & {caption(c) for c in held}
    assert all(is_heldout(sample("test", i).attributes) for i in range(200))
    # Held-out prompts test composition: every pair of attribute values still occurs in training.
    for a, b in itertools.combinations(ATTRIBUTE_NAMES, 2):
        pairs = {(getattr(c, a), getattr(c, b)) for c in seen}
        expected = {(x, y) for x in VOCAB[a] for y in VOCAB[b]}
        if {a, b} == {"color", "background"}:
            expected = {(x, y) for x, y in expected if x != y}
        assert pairs == expected, (a, b)


def test_splits_use_distinct_streams():
    streams = [s.stream for s in SPLITS.values()]
    assert len(streams) == len(set(streams))


def _foreground(image: np.ndarray, background: tuple[int, int, int]) -> np.ndarray:
    return np.abs(image.astype(np.int32) - np.asarray(background)).sum(-1) > 60


def test_images_show_their_attributes():
    """Measure each sample's pixels: shape colour, background colour, position region and size order."""
    areas: dict[str, list[float]] = {s: [] for s in VOCAB["size"]}
    for i in range(300):
        s = sample("val", i)
        a, img = s.attributes, s.image.astype(np.float64)
        corner = img[[0, 0, -1, -1], [0, -1, 0, -1]]  # corners: away from most shapes, so mostly background
        bg = np.median(corner, axis=0)
        assert np.abs(bg - BACKGROUND_RGB[a.background]).max() < 40, (i, a, bg)
        mask = _foreground(s.image, tuple(bg))
        inner = mask & np.roll(mask, 1, 0) & np.roll(mask, -1, 0) & np.roll(mask, 1, 1) & np.roll(mask, -1, 1)
        fill = img[inner].mean(axis=0)  # interior pixels only: edges blend with the background
        assert np.abs(fill - SHAPE_RGB[a.color]).max() < 40, (i, a, fill)
        ys, xs = np.nonzero(mask)
        row, col = divmod(VOCAB["position"].index(a.position), 3)
        # The centroid lies nearest its region's centre (a triangle's centroid is its centre; others symmetric).
        assert np.argmin([abs(xs.mean() + 0.5 - c) for c in REGION_CENTERS]) == col, (i, a)
        assert np.argmin([abs(ys.mean() + 0.5 - c) for c in REGION_CENTERS]) == row, (i, a)
        areas[a.size].append(mask.sum())
    assert max(areas["small"]) < min(areas["large"])
    assert np.mean(areas["small"]) < np.mean(areas["medium"]) < np.mean(areas["large"])


def test_a_caption_has_a_distribution_of_images():
    prompt = parse_caption("a large red star in the center on a black background")
    images = np.stack([sample_for_prompt(prompt, i).image for i in range(16)])
    assert len({im.tobytes() for im in images}) == 16
    assert images.reshape(16, -1).astype(np.float32).std(axis=0).mean() > 10


def test_sample_for_prompt_fills_open_attributes():
    prompt = parse_caption("a red circle")
    samples = [sample_for_prompt(prompt, i) for i in range(60)]
    assert all(s.attributes.shape == "circle" and s.attributes.color == "red" for s in samples)
    assert all(s.caption == "a red circle" for s in samples)
    assert len({s.attributes.background for s in samples}) == 5  # every background but red
    assert len({s.attributes.position for s in samples}) > 5
    assert np.array_equal(samples[3].image, sample_for_prompt(prompt, 3).image)


def test_train_caption_policy_mixes_full_and_partial_captions():
    prompts = [sample("train", i, TRAIN_CAPTIONS).prompt for i in range(400)]
    full = np.mean([p.complete for p in prompts])
    assert 0.5 < full < 0.85  # 0.6 full + 0.4 * 0.5^4 partial captions that happen to keep everything
    assert all(p.shape is not None for p in prompts)
    named = np.array([p.named() for p in prompts])
    assert 0.6 < named[:, 1:].mean() < 0.9


def test_cached_dataset_round_trip(tmp_path):
    cache = CachedDataset.build("train", 16, start=5)
    cache.save(tmp_path / "cache.pt")
    loaded = CachedDataset.load(tmp_path / "cache.pt")
    reference = make_batch("train", 5, 16, TRAIN_CAPTIONS)
    images, labels = loaded.batch(slice(None))
    assert torch.equal(images, reference.images) and torch.equal(labels, reference.labels)
    assert loaded.captions == reference.captions
    assert torch.equal(loaded[3]["image"], reference.images[3])
