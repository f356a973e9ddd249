"""The committed default model (models/scott-tiny): small fp16 weights that the server's pipeline loads, and
1-2 step images that follow held-out prompts, read back by the attribute classifier (models/classifier)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from safetensors import safe_open

from engines.load_options import LoadOptions
from engines.loader import load_pipeline
from engines.onnx_export import export_onnx
from scott.eval.evaluate import colour_by_background, evaluate
from scott.eval.generators import pipeline_generate_fn
from scott.eval.prompts import eval_prompts, prompts_by_background
from scott.eval.psnr import psnr
from scott.pipeline import ImageRequest, TextToImagePipeline

MODEL = Path(__file__).resolve().parents[1] / "models" / "scott-tiny"

pytestmark = pytest.mark.skipif(
    not (MODEL / "model_index.json").is_file(), reason=f"no committed model at {MODEL} (make embedded-model)"
)


def test_weights_are_small_fp16_safetensors() -> None:
    files = sorted(MODEL.glob("*/*.safetensors"))
    assert {f.parent.name for f in files} == {"text_encoder", "unet", "vae", "vae_tiny"}
    for path in files:
        with safe_open(str(path), framework="pt") as f:
            dtypes = {str(f.get_slice(k).get_dtype()) for k in f.keys()}  # noqa: SIM118 (safe_open is not iterable)
        assert dtypes == {"F16"}, (path, dtypes)
    total = sum(p.stat().st_size for p in MODEL.rglob("*") if p.is_file())
    assert total < 40 * 2**20, f"{total / 2**20:.1f} MiB"
    unet = json.loads((MODEL / "unet" / "config.json").read_text())
    assert unet["time_cond_proj_dim"] is not None  # the distilled student: one UNet call per step


def test_exports_to_onnx_that_matches_torch(tmp_path: Path) -> None:
    # The CPU backends serve this model through ONNX Runtime; export_onnx raises if any graph's output differs from
    # PyTorch's beyond its tolerance, at two batch sizes and image shapes (the UNet's pooled text included).
    manifest = export_onnx(MODEL, tmp_path)
    assert manifest["model_info"]["default_size"] == 64
    assert all(entry["max_abs_error"] <= manifest["tolerance"] for entry in manifest["networks"].values())


@pytest.fixture(scope="module")
def pipelines() -> dict[str, TextToImagePipeline]:
    return {decoder: load_pipeline(MODEL, LoadOptions("torch", "cpu", decoder=decoder)) for decoder in ("full", "tiny")}


@pytest.mark.parametrize("decoder", ["full", "tiny"])
@pytest.mark.parametrize("steps", [1, 2])
def test_images_follow_held_out_prompts(pipelines, steps: int, decoder: str) -> None:
    # 24 held-out captions (never trained on) x 2 seeds. Chance: colour 1/8, size 1/3, background 1/6, position 1/9.
    # Measured at commit (1 / 2 steps, full decoder): background 1.00 / 1.00, colour 0.92 / 0.94, size 0.90 / 0.85,
    # position 1.00 / 1.00. Shape is near chance (0.33 / 0.31 against 0.2, mostly blobs), so prompt accuracy is not
    # asserted: it moves with luck on the shape. A 2,400-step teacher's student failed here (colour 0.44,
    # position 0.65), which is how `make embedded-model` was found not to reproduce the model then committed.
    # The tiny decoder (vae_tiny/) must keep them: its images are scored by the same bounds.
    metrics = evaluate(pipeline_generate_fn(pipelines[decoder], steps), eval_prompts(24), 2, real_floor=False)
    assert metrics["accuracy_background"] >= 0.8, metrics
    assert metrics["accuracy_color"] >= 0.6, metrics
    assert metrics["accuracy_size"] >= 0.5, metrics
    assert metrics["accuracy_position"] >= 0.8, metrics


@pytest.mark.slow  # 96 images and the classifier, per step count: about 25 s each on 2 cores
@pytest.mark.parametrize("steps", [1, 2])
def test_colour_follows_the_prompt_on_every_background(pipelines, steps: int) -> None:
    # 24 held-out captions on each background of the data x 4 seeds (benchmarks/colour_by_background.py's set).
    # Measured at commit (1 / 2 steps), worst background: black 0.81 / 0.83 (warm hues shift: orange drawn yellow).
    # The SCott model committed at 412ef83 drew the named colour on 0.71 / 0.64 of white-background images, which its
    # overall colour accuracy hid.
    colour = colour_by_background(pipeline_generate_fn(pipelines["full"], steps), prompts_by_background(24), 4)
    for background, accuracy in colour.items():
        assert accuracy >= 0.75, (background, accuracy)


@pytest.mark.parametrize("steps", [1, 4])
def test_the_tiny_decoder_reproduces_the_full_decoders_images(pipelines, steps: int) -> None:
    # The same latents through both decoders, on 24 held-out prompts x 2 seeds: PSNR of the tiny decoder's image
    # against the full decoder's. The target is 28 dB; measured at commit 33.2 / 32.2 dB (benchmarks/fidelity.py
    # measures 100 x 4).
    requests = [
        ImageRequest(p, seed=s, steps=steps, guidance_scale=8.0, gamma=0.3, width=64, height=64)
        for p in eval_prompts(24)
        for s in range(2)
    ]
    full, tiny = (pipelines[d].generate(requests).images for d in ("full", "tiny"))
    assert float(psnr(tiny, full).mean()) >= 28.0
