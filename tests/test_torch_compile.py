"""torch.compile (inductor) on the torch backend: the same images as eager, batch invariance, and its kernel cache
on disk. Compiling takes about a minute per batch size on 2 cores, so this file compiles two shapes only."""

from __future__ import annotations

import numpy as np
import pytest

from engines.load_options import LoadOptions
from engines.loader import load_pipeline
from scott.pipeline import ImageRequest


def requests(seeds: list[int]) -> list[ImageRequest]:
    return [
        ImageRequest(f"a red circle number {s}", seed=s, steps=2, guidance_scale=8.0, gamma=0.3, width=64, height=64)
        for s in seeds
    ]


@pytest.mark.slow  # compiles two shapes: minutes on 2 cores
def test_compiled_images_match_eager_alone_and_in_a_batch(tiny_model_dir, tiny_pipeline, tmp_path, monkeypatch):
    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", str(tmp_path / "inductor"))
    compiled = load_pipeline(tiny_model_dir, LoadOptions(backend="torch", device="cpu", compile=True))
    assert compiled.backend.name == "torch-compile" and compiled.backend.per_shape  # the server warms each batch
    alone = compiled.generate(requests([3])).images.astype(int)
    batch = compiled.generate(requests([5, 3, 1, 2])).images.astype(int)
    eager = tiny_pipeline.generate(requests([5, 3, 1, 2])).images.astype(int)
    assert np.abs(batch - eager).max() <= 1  # fused kernels round differently, by one level at most
    assert np.abs(alone[0] - batch[1]).max() <= 1
    assert any((tmp_path / "inductor").rglob("*.py")), "inductor wrote no kernels into its cache"


def test_compile_is_refused_for_other_backends() -> None:
    with pytest.raises(ValueError, match="compile applies to the torch backend, not onnx"):
        LoadOptions(backend="onnx", compile=True)
