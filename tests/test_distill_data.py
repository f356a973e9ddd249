"""Data specs for distillation: procedural, a folder of captioned images, webdataset shards (tiny fixtures),
and the latent cache's batches (deterministic, the same global batch for any number of ranks)."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from scott.distill.data import finite_items, parse_spec, stream_items
from scott.distill.latents import CachedBatches, Encoders, StreamedBatches, build_cache
from scott.models import build_model
from scott.train.latent_cache import LatentCache

COLORS = [(255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 0), (0, 255, 255)]


def _png(color: tuple[int, int, int], size: tuple[int, int] = (80, 64)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, color).save(buf, format="PNG")
    return buf.getvalue()


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("images")
    for i, color in enumerate(COLORS):
        (root / f"img{i}.png").write_bytes(_png(color))
        (root / f"img{i}.txt").write_text(f"a flat colour {i}\n")
    return root


@pytest.fixture(scope="module")
def shards(tmp_path_factory) -> list[Path]:
    root = tmp_path_factory.mktemp("shards")
    paths = []
    for s in range(2):
        path = root / f"shard-{s:03d}.tar"
        with tarfile.open(path, "w") as tar:
            for i in range(3):
                key = f"s{s}_{i:02d}"
                for suffix, data in ((".png", _png(COLORS[(s * 3 + i) % 5])), (".txt", f"caption {s} {i}".encode())):
                    info = tarfile.TarInfo(key + suffix)
                    info.size = len(data)
                    tar.addfile(info, io.BytesIO(data))
        paths.append(path)
    return paths


@pytest.fixture(scope="module")
def encoders() -> Encoders:
    return Encoders(build_model("tiny", seed=0), torch.device("cpu"))


def test_parse_spec(folder, shards):
    assert parse_spec("procedural:12").count == 12 and parse_spec("procedural").count == 10_000
    assert parse_spec(str(folder)).kind == "folder"
    pattern = str(shards[0].parent / "shard-{000..001}.tar")
    assert parse_spec(pattern).shards == tuple(str(p) for p in shards)
    assert parse_spec(str(shards[0].parent)).kind == "webdataset"
    assert parse_spec("wds:" + str(shards[1])).shards == (str(shards[1]),)
    with pytest.raises(FileNotFoundError):
        parse_spec(str(shards[0].parent / "shard-{000..005}.tar"))
    with pytest.raises(ValueError):
        parse_spec("nonsense")


def test_procedural_items_are_scott_data_images():
    images, captions = next(finite_items(parse_spec("procedural:5"), resolution=64))
    assert images.shape == (5, 3, 64, 64) and len(captions) == 5
    assert float(images.min()) >= -1 and float(images.max()) <= 1
    from scott.data import TRAIN_CAPTIONS, sample

    assert captions[2] == sample("train", 2, TRAIN_CAPTIONS).caption


def test_folder_items_are_cropped_resized_and_captioned(folder):
    chunks = list(finite_items(parse_spec(str(folder)), resolution=32, chunk=2))
    images = torch.cat([c[0] for c in chunks])
    captions = [t for c in chunks for t in c[1]]
    assert images.shape == (5, 3, 32, 32)
    assert captions[0] == "a flat colour 0"
    torch.testing.assert_close(images[0, :, 5, 5], torch.tensor([1.0, -1.0, -1.0]))  # red


def test_folder_without_captions_is_an_error(tmp_path):
    (tmp_path / "x.png").write_bytes(_png((0, 0, 0)))
    with pytest.raises(FileNotFoundError, match="caption"):
        list(finite_items(parse_spec(str(tmp_path)), 32))


def test_webdataset_ranks_see_disjoint_samples_and_stream_forever(shards):
    spec = parse_spec(str(shards[0].parent / "shard-{000..001}.tar"))
    take = 6
    per_rank = []
    for rank in range(2):
        it = stream_items(spec, 16, rank=rank, world=2, seed=0)
        per_rank.append([next(it)[1] for _ in range(take)])  # 3 per shard: wraps into a second epoch
    assert set(per_rank[0][:3]).isdisjoint(per_rank[1][:3])
    assert set(per_rank[0][:3]) | set(per_rank[1][:3]) == {f"caption {s} {i}" for s in range(2) for i in range(3)}
    # three ranks on two shards: split by sample instead, still disjoint
    three = [[next(stream_items(spec, 16, rank=r, world=3, seed=0))[1]] for r in range(3)]
    assert len({c[0] for c in three}) == 3


def test_streamed_batches_encode_on_the_fly(shards, encoders):
    spec = parse_spec(str(shards[0].parent))
    batches = StreamedBatches(spec, encoders, resolution=64, seed=0, rank=0, world=1)
    batch = batches.batch(seed=0, step=0, rank=0, world=1, batch_size=4)
    assert batch.latents.shape == (4, 4, 8, 8) and batch.text.shape == (4, 77, 128)
    assert torch.isfinite(batch.latents).all()


def test_latent_cache_round_trip_and_batches(tmp_path, folder, encoders):
    cache = build_cache(parse_spec(str(folder)), encoders, resolution=64)
    assert len(cache) == 5 and cache.extras["embeddings"].shape[0] == 5 and len(cache.captions) == 5
    cache.save(tmp_path / "c.pt")
    reread = LatentCache.load(tmp_path / "c.pt")
    assert reread.captions == cache.captions and reread.extras.keys() == cache.extras.keys()
    for name in ("mean", "std"):
        assert torch.equal(getattr(reread, name), getattr(cache, name))
    for name, value in cache.extras.items():
        assert torch.equal(reread.extras[name], value), name
    loaded = CachedBatches(reread)
    a = loaded.batch(seed=1, step=3, rank=0, world=1, batch_size=4)
    b = loaded.batch(seed=1, step=3, rank=0, world=1, batch_size=4)
    torch.testing.assert_close(a.latents, b.latents)
    c = loaded.batch(seed=1, step=4, rank=0, world=1, batch_size=4)
    assert not torch.allclose(a.latents, c.latents)


def test_latent_cache_shares_one_global_order_across_world_sizes():
    n = 10
    cache = CachedBatches(
        LatentCache(
            mean=torch.arange(n, dtype=torch.float32).reshape(n, 1, 1, 1),
            std=torch.zeros(n, 1, 1, 1),
            captions=[""] * n,
            extras={"caption_index": torch.zeros(n, dtype=torch.long), "embeddings": torch.zeros(1, 2, 3)},
        )
    )

    def ids(batch) -> list[int]:
        return batch.latents.flatten().long().tolist()

    single = [ids(cache.batch(0, s, 0, 1, 4)) for s in range(5)]
    flat = [i for b in single for i in b]
    # every index once per epoch (epochs of n), then a fresh permutation
    assert sorted(flat[:10]) == list(range(10)) and sorted(flat[10:20]) == list(range(10))
    two = [ids(cache.batch(0, s, r, 2, 2)) for s in range(5) for r in range(2)]
    assert [i for b in two for i in b] == flat  # ranks split the same global stream
    assert np.unique(ids(cache.batch(0, 0, 0, 1, 10))).size == 10
