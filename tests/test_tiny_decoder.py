"""Serving with a tiny decoder (AutoencoderTiny) in place of the VAE's: choosing one, refusing one that does not fit,
the same images from torch and ONNX Runtime, exports keyed by its weights, and the server saying which one serves.
(OpenVINO's run is in tests/test_openvino_backend.py: that runtime loads in its own pytest process.)"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import httpx
import numpy as np
import pytest
import torch
from diffusers import AutoencoderTiny

from engines.load_options import LoadOptions
from engines.loader import load_pipeline
from engines.onnx_export import OnnxExport, export_onnx, resolve_onnx_dir
from scott.decoder import FULL_DECODER, TINY_SUBFOLDER, DecoderMismatch, build_tiny_decoder, resolve_decoder
from scott.images import to_uint8
from scott.models import build_model, load_model, save_model
from scott.pipeline import ImageRequest
from server.app import create_app
from server.settings import ServerSettings
from tests.support.background_server import BackgroundServer


def requests(steps: int = 1) -> list[ImageRequest]:
    prompts = ["a red circle on a blue background", "a large green star in the top left", "", "a cross"]
    return [ImageRequest(p, seed=i, steps=steps, guidance_scale=8.0, gamma=0.3, width=64, height=64)
            for i, p in enumerate(prompts)]  # fmt: skip


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny preset with random weights and a random tiny decoder of its own (vae_tiny/)."""
    return save_model(build_model("tiny", seed=0, tiny_decoder=True), tmp_path_factory.mktemp("models") / "tiny")


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("SCOTT_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path / "cache"


def test_the_choice_is_full_tiny_or_an_autoencoder_tiny_folder(model_dir: Path, tmp_path: Path) -> None:
    assert resolve_decoder(model_dir, None) == resolve_decoder(model_dir, "full") == FULL_DECODER
    tiny = resolve_decoder(model_dir, "tiny")
    assert tiny.is_tiny and tiny.path == model_dir / TINY_SUBFOLDER
    assert resolve_decoder(tmp_path, str(model_dir / TINY_SUBFOLDER)) == tiny  # DIR: any folder, any model
    with pytest.raises(FileNotFoundError, match="has no vae_tiny/"):
        resolve_decoder(tmp_path, "tiny")
    with pytest.raises(DecoderMismatch, match="holds AutoencoderKL"):
        resolve_decoder(model_dir, str(model_dir / "vae"))
    with pytest.raises(FileNotFoundError, match=r"no config\.json"):
        resolve_decoder(model_dir, str(tmp_path))


@pytest.mark.parametrize(
    ("arch", "problem"),
    [
        ({"latent_channels": 16}, "16 latent channels, the model has 4"),
        ({"decoder_block_out_channels": [32] * 3, "num_decoder_blocks": [1] * 3}, "upsamples 4x, the model's VAE 8x"),
    ],
)
def test_a_tiny_decoder_that_does_not_fit_is_refused_at_load(
    model_dir: Path, tmp_path: Path, cache: Path, arch, problem
):
    wrong = AutoencoderTiny.from_config({"encoder_block_out_channels": [8], "num_encoder_blocks": [1], **arch})
    wrong.save_pretrained(str(tmp_path / "wrong"))
    for backend in ("torch", "onnx"):  # before any export
        with pytest.raises(DecoderMismatch, match=problem):
            load_pipeline(model_dir, LoadOptions(backend, "cpu", decoder=str(tmp_path / "wrong")))
    assert not cache.exists()


def test_torch_decodes_latents_as_diffusers_does_for_autoencoder_tiny(model_dir: Path) -> None:
    pipeline = load_pipeline(model_dir, LoadOptions("torch", "cpu", decoder="tiny"))
    assert pipeline.info.decoder == "tiny"
    latents = pipeline.sample_latents(requests())
    tiny = AutoencoderTiny.from_pretrained(str(model_dir / TINY_SUBFOLDER), torch_dtype=torch.float32)
    with torch.no_grad():  # diffusers' pipelines: vae.decode(latents / vae.config.scaling_factor)
        expected = to_uint8(tiny.decode(latents / tiny.config.scaling_factor).sample)
    assert np.array_equal(pipeline.generate(requests()).images, expected)
    full = load_pipeline(model_dir, LoadOptions("torch", "cpu"))
    assert full.info.decoder == "full"
    assert torch.equal(full.sample_latents(requests()), latents)  # the decoder is the only difference
    assert np.abs(full.generate(requests()).images.astype(int) - expected).mean() > 10


def test_onnx_runtime_serves_the_tiny_decoder_as_torch_does(model_dir: Path, cache: Path) -> None:
    reference = (
        load_pipeline(model_dir, LoadOptions("torch", "cpu", decoder="tiny")).generate(requests(2)).images.astype(int)
    )
    pipeline = load_pipeline(model_dir, LoadOptions("onnx", "cpu", decoder="tiny"))
    assert pipeline.info.decoder == "tiny"
    diff = np.abs(pipeline.generate(requests(2)).images.astype(int) - reference)
    assert diff.max() <= 1, diff.max()  # fp32 both: rounding only


def test_exports_are_keyed_by_the_decoder_and_its_weights(model_dir: Path, tmp_path: Path, cache: Path) -> None:
    work = tmp_path / "model"
    shutil.copytree(model_dir, work)
    tiny = resolve_decoder(work, "tiny")
    full_dir, tiny_dir = resolve_onnx_dir(work), resolve_onnx_dir(work, decoder=tiny)
    assert full_dir != tiny_dir and full_dir.parent == tiny_dir.parent == cache / "onnx"
    assert (OnnxExport.read(full_dir).decoder_kind, OnnxExport.read(tiny_dir).decoder_kind) == ("full", "tiny")
    manifest = OnnxExport.read(tiny_dir).manifest
    assert manifest["source"]["decoder"] == {"kind": "tiny", "fingerprint": tiny.fingerprint()}
    assert manifest["vae"]["scaling_factor"] == 1.0 and manifest["model_info"]["decoder"] == "tiny"
    assert resolve_onnx_dir(work, decoder=tiny) == tiny_dir  # reused

    # New tiny-decoder weights: a new export; the full decoder's is untouched.
    retrained = build_tiny_decoder(load_model(work).vae, {"decoder_block_out_channels": [32] * 4,
                                                          "num_decoder_blocks": [1] * 4}, seed=7)  # fmt: skip
    retrained.save_pretrained(str(work / TINY_SUBFOLDER))
    assert resolve_onnx_dir(work, decoder=tiny) not in (tiny_dir, full_dir)
    assert resolve_onnx_dir(work) == full_dir

    # An export shipped beside the model (<model>/onnx) with the full decoder is passed over for the tiny one.
    export_onnx(work, work / "onnx")
    assert resolve_onnx_dir(work) == work / "onnx"
    assert resolve_onnx_dir(work, decoder=tiny).parent == cache / "onnx"
    with pytest.raises(ValueError, match=r"'decoder': 'full'.*'decoder': 'tiny'.* is needed"):
        resolve_onnx_dir(work, onnx_dir=work / "onnx", decoder=tiny)


def test_the_server_says_which_decoder_serves(model_dir: Path) -> None:
    settings = ServerSettings(model_dir=model_dir, backend="torch", device="cpu", decoder="tiny", max_batch_size=2)
    with BackgroundServer(create_app(settings)) as server:
        info = httpx.get(f"{server.url}/info").json()
        assert info["decoder"] == "tiny"
        metrics = httpx.get(f"{server.url}/metrics").text
        assert 'decoder="tiny"' in next(line for line in metrics.splitlines() if line.startswith("scott_backend_info"))
        response = httpx.post(f"{server.url}/generate", json={"prompt": "a red circle", "seed": 1}, timeout=60)
        assert response.status_code == 200, response.text
        assert json.loads(response.text)["images"]


def test_a_server_with_a_decoder_that_does_not_fit_fails_to_load_naming_it(model_dir: Path, tmp_path: Path) -> None:
    wrong = AutoencoderTiny.from_config({"encoder_block_out_channels": [8], "num_encoder_blocks": [1],
                                         "latent_channels": 8})  # fmt: skip
    wrong.save_pretrained(str(tmp_path / "wrong"))
    settings = ServerSettings(model_dir=model_dir, backend="torch", device="cpu", decoder=str(tmp_path / "wrong"))
    with pytest.raises(RuntimeError, match="8 latent channels, the model has 4"):
        BackgroundServer(create_app(settings)).__enter__()
