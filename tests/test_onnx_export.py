"""ONNX export: verified graphs with dynamic axes, external data, the manifest, and where exports are found."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from diffusers import AutoencoderKL, UNet2DConditionModel

from engines.onnx_export import (
    MANIFEST,
    OnnxExport,
    UNetGraph,
    VaeDecoderGraph,
    _export_graph,
    export_onnx,
    model_fingerprint,
    resolve_onnx_dir,
)
from engines.shapes import NETWORKS, ModelDims, network_specs
from engines.torch_backend import TorchBackend
from scott.models import PRESETS, build_model, save_model


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    return save_model(build_model("tiny", seed=0), tmp_path_factory.mktemp("model") / "tiny")


@pytest.fixture(scope="module")
def exported(model_dir, tmp_path_factory) -> tuple[Path, dict]:
    """The tiny model exported with external data forced: the path SD-1.5's 3.4 GB UNet takes."""
    out = tmp_path_factory.mktemp("onnx")
    return out, export_onnx(model_dir, out, external_data=True)


def test_export_is_verified_and_described(exported):
    out, manifest = exported
    assert OnnxExport.read(out).manifest == manifest
    assert set(manifest["networks"]) == set(NETWORKS)
    for name, entry in manifest["networks"].items():
        path = out / entry["file"]
        onnx.checker.check_model(str(path), full_check=True)
        assert (out / entry["external_data"]).stat().st_size > 1_000_000  # the weights really live outside
        assert path.stat().st_size < 1_000_000
        assert entry["max_abs_error"] <= 1e-3, name
        assert {(c["batch"], c["width"], c["height"]) for c in entry["checks"]} == {(2, 64, 64), (1, 32, 64)}
    unet = manifest["networks"]["unet"]
    assert [i["name"] for i in unet["inputs"]] == ["sample", "timestep", "encoder_hidden_states", "timestep_cond"]
    assert unet["dynamic_axes"]["sample"] == {"0": "batch", "2": "height", "3": "width"}
    assert manifest["dims"] == {
        "text_tokens": 77,
        "text_dim": 128,
        "latent_channels": 4,
        "vae_scale_factor": 8,
        "guidance_embedding_dim": 64,
    }
    assert manifest["model_info"]["default_size"] == 64
    assert manifest["vae"] == {"scaling_factor": 1.0, "shift_factor": 0.0, "peak_channels": 64}
    assert {"torch", "onnx", "onnxruntime"} <= set(manifest["versions"])


def test_graphs_have_dynamic_batch_and_latent_size(exported, model_dir):
    """Run the exported UNet at shapes it was not traced at; compare with PyTorch."""
    out, _ = exported
    export = OnnxExport.read(out)
    session = ort.InferenceSession(str(export.path("unet")), providers=["CPUExecutionProvider"])
    unet = UNet2DConditionModel.from_pretrained(str(model_dir / "unet"), torch_dtype=torch.float32).eval()
    gen = torch.Generator().manual_seed(3)
    for batch, height, width in [(3, 16, 8), (1, 4, 12)]:
        inputs = {
            "sample": torch.randn(batch, 4, height, width, generator=gen),
            "timestep": torch.tensor([999.0, 259.0, 499.0][:batch]),
            "encoder_hidden_states": torch.randn(batch, 77, 128, generator=gen),
            "timestep_cond": torch.randn(batch, 64, generator=gen),
        }
        with torch.inference_mode():
            expected = UNetGraph(unet)(*inputs.values()).numpy()
        (actual,) = session.run(None, {k: v.numpy() for k, v in inputs.items()})
        assert actual.shape == (batch, 4, height, width)
        np.testing.assert_allclose(actual, expected, atol=1e-4)


def test_vae_graph_applies_scaling_and_shift_like_torch_backend(tmp_path):
    """The tiny VAE's scaling is 1.0, which would hide a missing 1/scaling_factor: use SD-like factors."""
    torch.manual_seed(0)
    config = {**PRESETS["tiny"]["vae"], "scaling_factor": 0.18215, "shift_factor": 0.1}
    bundle = build_model("tiny", seed=0)
    bundle.vae = AutoencoderKL.from_config(config).eval()
    latents = torch.randn(2, 4, 8, 8) * 3
    expected = TorchBackend(bundle, torch.device("cpu")).decode(latents)
    graph = VaeDecoderGraph(bundle.vae)
    spec = network_specs(ModelDims(77, 128, 4, 8, 64))["vae_decoder"]
    path = tmp_path / spec.file_name
    _export_graph(graph, {"latents": latents}, spec, path, opset=17, external_data=False)
    (actual,) = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(
        None, {"latents": latents.numpy()}
    )
    np.testing.assert_allclose(actual, expected.numpy(), atol=1e-4)
    # And it really depends on the scaling: decoding unscaled latents gives something else.
    with torch.inference_mode():
        unscaled = bundle.vae.decode(latents).sample.numpy()
    assert np.abs(actual - unscaled).max() > 0.05


def _export_unet_and_compare(
    unet, spec, export_inputs: dict, check_inputs: dict, tmp_path: Path
) -> ort.InferenceSession:
    """Export the UNet traced on export_inputs; assert ONNX Runtime matches torch on check_inputs (another shape)."""
    path = tmp_path / spec.file_name
    _export_graph(UNetGraph(unet), export_inputs, spec, path, opset=17, external_data=False)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    feed = [check_inputs[name] for name in spec.input_names]
    (out,) = session.run(None, {name: t.numpy() for name, t in zip(spec.input_names, feed, strict=True)})
    with torch.inference_mode():
        np.testing.assert_allclose(out, UNetGraph(unet)(*feed).numpy(), atol=1e-4)
    return session


def test_unet_without_guidance_embedding_has_no_timestep_cond(tmp_path):
    torch.manual_seed(0)
    unet = UNet2DConditionModel.from_config({**PRESETS["tiny"]["unet"], "time_cond_proj_dim": None}).eval()
    spec = network_specs(ModelDims(77, 128, 4, 8, None))["unet"]
    assert spec.input_names == ["sample", "timestep", "encoder_hidden_states"]
    inputs = {
        "sample": torch.randn(1, 4, 8, 8),
        "timestep": torch.tensor([999.0]),
        "encoder_hidden_states": torch.randn(1, 77, 128),
    }
    batch2 = {k: torch.cat([v, v]) for k, v in inputs.items()}
    session = _export_unet_and_compare(unet, spec, inputs, batch2, tmp_path)
    assert [i.name for i in session.get_inputs()] == spec.input_names


def test_pooled_text_unet_exports_with_dynamic_batch_and_size(tmp_path):
    # The shipped model's UNet adds attention-pooled text to its time embedding (addition_embed_type "text"): that
    # pooling must trace with a dynamic batch and a latent size other than the one it was exported at.
    torch.manual_seed(0)
    config = {**PRESETS["tiny"]["unet"], "addition_embed_type": "text", "addition_embed_type_num_heads": 4}
    unet = UNet2DConditionModel.from_config(config).eval()
    assert unet.add_embedding is not None
    cond_dim = config["time_cond_proj_dim"]
    spec = network_specs(ModelDims(77, 128, 4, 8, cond_dim))["unet"]
    inputs = {
        "sample": torch.randn(1, 4, 8, 8),
        "timestep": torch.tensor([999.0]),
        "encoder_hidden_states": torch.randn(1, 77, 128),
        "timestep_cond": torch.randn(1, cond_dim),
    }
    batch3 = {
        "sample": torch.randn(3, 4, 16, 8),
        "timestep": torch.tensor([999.0, 500.0, 19.0]),
        "encoder_hidden_states": torch.randn(3, 77, 128),
        "timestep_cond": torch.randn(3, cond_dim),
    }
    _export_unet_and_compare(unet, spec, inputs, batch3, tmp_path)


def test_resolve_prefers_the_models_own_export_and_rejects_stale_ones(exported, model_dir, tmp_path):
    out, _ = exported
    model = tmp_path / "model"
    shutil.copytree(model_dir, model)
    shutil.copytree(out, model / "onnx")
    cache = tmp_path / "cache"
    assert resolve_onnx_dir(model, cache_dir=cache) == model / "onnx"
    assert resolve_onnx_dir(model, onnx_dir=out, cache_dir=cache) == out
    assert not cache.exists()  # nothing was exported

    # Change the weights: the shipped export no longer matches them.
    config = json.loads((model / "unet" / "config.json").read_text())
    (model / "unet" / "config.json").write_text(json.dumps({**config, "sample_size": 16}))
    assert model_fingerprint(model) != model_fingerprint(model_dir)
    with pytest.raises(ValueError, match="made from other weights"):
        resolve_onnx_dir(model, cache_dir=cache)
    with pytest.raises(ValueError, match="made from other weights"):
        resolve_onnx_dir(model, onnx_dir=out, cache_dir=cache)


def test_read_rejects_incomplete_exports(exported, tmp_path):
    out, _ = exported
    with pytest.raises(FileNotFoundError, match="scott export"):
        OnnxExport.read(tmp_path)
    broken = tmp_path / "broken"
    shutil.copytree(out, broken)
    (broken / "unet.onnx").unlink()
    with pytest.raises(FileNotFoundError, match=r"unet\.onnx"):
        OnnxExport.read(broken)
    incomplete = tmp_path / "incomplete"
    shutil.copytree(out, incomplete)
    manifest = OnnxExport.read(out).manifest
    (incomplete / MANIFEST).write_text(json.dumps({k: v for k, v in manifest.items() if k != "dims"}))
    with pytest.raises(ValueError, match=r"manifest\.json is not a complete export manifest \(KeyError: 'dims'\)"):
        OnnxExport.read(incomplete)
    (incomplete / MANIFEST).write_text('{"format": 1,')
    with pytest.raises(ValueError, match=r"manifest\.json is not valid JSON"):
        OnnxExport.read(incomplete)
    (incomplete / MANIFEST).write_text(json.dumps({**manifest, "format": 2}))
    with pytest.raises(ValueError, match="has format 2, this version reads 1"):
        OnnxExport.read(incomplete)


def test_an_fp16_export_computes_in_fp16_behind_fp32_inputs_and_outputs(exported, model_dir, tmp_path):
    """What TensorRT 11 builds fp16 engines from: fp16 weights and math, fp32 at the edges (the runtimes bind the same
    tensors), its own cache folder, and close to the fp32 graphs on the same inputs."""
    out, _ = exported
    model = tmp_path / "model"
    shutil.copytree(model_dir, model)
    shutil.copytree(out, model / "onnx")  # an fp32 export beside the weights must not be taken for fp16
    cache = tmp_path / "cache"
    root = resolve_onnx_dir(model, cache_dir=cache, precision="f16")
    assert root == cache / "onnx" / f"{model_fingerprint(model)[:16]}-f16"
    export = OnnxExport.read(root)
    assert export.precision == "f16" and OnnxExport.read(out).precision == "f32"
    # The cache is readable by a server running as another user (the Docker image's uid 10001, a shared volume):
    # mkdtemp and mkstemp would leave the folder 0700 and the manifest 0600.
    for path in (root, root / "manifest.json", export.path("unet")):
        assert path.stat().st_mode & 0o044 == 0o044, (path, oct(path.stat().st_mode))
    assert all(n["max_abs_error"] <= 5e-2 for n in export.manifest["networks"].values())
    for name in NETWORKS:
        graph = onnx.load(str(export.path(name)))
        floats = {
            t.data_type
            for t in graph.graph.initializer
            if t.data_type in (onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16)
        }
        assert floats == {onnx.TensorProto.FLOAT16}, name
        edges = [*graph.graph.input, *graph.graph.output]
        assert all(v.type.tensor_type.elem_type in (onnx.TensorProto.FLOAT, onnx.TensorProto.INT32) for v in edges)
    vae16 = ort.InferenceSession(str(export.path("vae_decoder")), providers=["CPUExecutionProvider"])
    vae32 = ort.InferenceSession(str(out / "vae_decoder.onnx"), providers=["CPUExecutionProvider"])
    latents = {"latents": np.random.default_rng(0).standard_normal((2, 4, 32, 32), dtype=np.float32)}
    (a,), (b,) = vae16.run(None, latents), vae32.run(None, latents)
    assert np.abs(a - b).max() < 5e-2
    with pytest.raises(ValueError, match=r"f32.*f16.* is needed"):
        resolve_onnx_dir(model, onnx_dir=out, precision="f16")
