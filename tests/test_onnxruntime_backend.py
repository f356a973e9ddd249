"""The ONNX Runtime backend makes the same images as the torch backend, and exports on first use."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from engines.load_options import LoadOptions
from engines.loader import load_pipeline
from engines.onnx_export import MANIFEST, model_fingerprint
from engines.onnxruntime_backend import OnnxRuntimeBackend, session_options
from engines.threads import physical_cores
from scott.models import build_model, save_model
from scott.pipeline import ImageRequest, TextToImagePipeline


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    return save_model(build_model("tiny", seed=0), tmp_path_factory.mktemp("model") / "tiny")


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("cache")


@pytest.fixture(scope="module")
def onnx_pipeline(model_dir, cache_dir) -> TextToImagePipeline:
    """load_pipeline(backend="onnx") with no export anywhere: exports into the cache on first use."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("SCOTT_CACHE_DIR", str(cache_dir))
        return load_pipeline(model_dir, LoadOptions(backend="onnx"))


@pytest.fixture(scope="module")
def torch_pipeline(model_dir) -> TextToImagePipeline:
    return load_pipeline(model_dir, LoadOptions(backend="torch", device="cpu"))


def _requests(steps: int, width: int = 64, height: int = 64) -> list[ImageRequest]:
    prompts = ["a red circle on a blue background", "a small green square", ""]
    return [
        ImageRequest(
            prompt=p, seed=10 + i, steps=steps, guidance_scale=1.0 + 3 * i, gamma=0.3 * i, width=width, height=height
        )
        for i, p in enumerate(prompts)
    ]


def test_first_use_exports_into_the_cache(onnx_pipeline, model_dir, cache_dir):
    backend = onnx_pipeline.backend
    assert backend.name == "onnx" and backend.device == torch.device("cpu")
    export_dir = cache_dir / "onnx" / model_fingerprint(model_dir)[:16]
    assert (export_dir / MANIFEST).is_file() and backend.export.root == export_dir
    assert onnx_pipeline.info.name == model_dir.name
    assert [p.name for p in (cache_dir / "onnx").iterdir() if p.is_dir()] == [export_dir.name]  # no scratch left


@pytest.mark.parametrize(("steps", "width", "height"), [(4, 64, 64), (2, 32, 64)])
def test_images_match_torch_backend(onnx_pipeline, torch_pipeline, steps, width, height):
    requests = _requests(steps, width, height)
    expected = torch_pipeline.generate(requests).images.astype(np.float64)
    actual = onnx_pipeline.generate(requests).images.astype(np.float64)
    assert actual.shape == (3, height, width, 3)
    assert np.abs(actual - expected).mean() < 1 / 255
    assert np.abs(actual - expected).max() <= 2  # rounding at a uint8 boundary at most


def test_stages_match_torch_backend(onnx_pipeline, torch_pipeline):
    ort_backend, torch_backend = onnx_pipeline.backend, torch_pipeline.backend
    ids, _ = onnx_pipeline.tokenize(["a red circle", "two blue squares"])
    np.testing.assert_allclose(ort_backend.encode_text(ids), torch_backend.encode_text(ids), atol=1e-4)
    gen = torch.Generator().manual_seed(0)
    latents, text = torch.randn(2, 4, 8, 8, generator=gen), torch.randn(2, 77, 128, generator=gen)
    timesteps, cond = torch.tensor([999, 259]), torch.randn(2, 64, generator=gen)
    np.testing.assert_allclose(
        ort_backend.predict(latents, timesteps, text, cond),
        torch_backend.predict(latents, timesteps, text, cond),
        atol=1e-4,
    )
    np.testing.assert_allclose(ort_backend.decode(latents), torch_backend.decode(latents), atol=1e-4)


def test_outputs_belong_to_the_caller(onnx_pipeline):
    backend = onnx_pipeline.backend
    gen = torch.Generator().manual_seed(1)
    first_in, second_in = torch.randn(1, 4, 8, 8, generator=gen), torch.randn(1, 4, 8, 8, generator=gen)
    first = backend.decode(first_in)
    kept = first.clone()
    second = backend.decode(second_in)
    assert first.data_ptr() != second.data_ptr()
    assert torch.equal(first, kept)  # the second call did not write into the first result
    assert first.dtype == torch.float32 and first.shape == (1, 3, 64, 64)


def test_misuse_is_reported(onnx_pipeline):
    backend = onnx_pipeline.backend
    with pytest.raises(ValueError, match="guidance embedding"):
        backend.predict(torch.zeros(1, 4, 8, 8), torch.tensor([999]), torch.zeros(1, 77, 128), None)
    with pytest.raises(ValueError, match=r"encoder_hidden_states: shape \(1, 77, 64\)"):
        backend.predict(torch.zeros(1, 4, 8, 8), torch.tensor([999]), torch.zeros(1, 77, 64), torch.zeros(1, 64))


def test_session_options_are_tuned_for_cpu():
    import onnxruntime as ort

    options = session_options()
    assert options.intra_op_num_threads == physical_cores() >= 1
    assert options.graph_optimization_level == ort.GraphOptimizationLevel.ORT_ENABLE_ALL


def test_cuda_without_cuda_provider_is_an_error(onnx_pipeline):
    import onnxruntime as ort

    if "CUDAExecutionProvider" in ort.get_available_providers() and torch.cuda.is_available():
        pytest.skip("this host has onnxruntime-gpu and a GPU")
    with pytest.raises(RuntimeError, match=r"CUDAExecutionProvider|sees a GPU"):
        OnnxRuntimeBackend(onnx_pipeline.backend.export.root, "cuda")
