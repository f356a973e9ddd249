"""TensorRT: profiles, build planning and the engine index run everywhere; engines themselves need a GPU.

The GPU tests at the bottom build real FP16 engines for the tiny model and compare them with
PyTorch; they are skipped, with the reason, on hosts without TensorRT or CUDA.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, helper

from engines.engine_cache import BuildTarget, EngineCacheError
from engines.load_options import LoadOptions
from engines.loader import load_pipeline
from engines.onnx_export import MANIFEST, MANIFEST_FORMAT, OnnxExport, model_fingerprint
from engines.shapes import NETWORKS, Profile, build_profiles
from engines.tensorrt_build import EngineSet, build_engine_set, build_engines, check_engine_set, plan_engines
from engines.tensorrt_env import REQUIREMENT, missing_requirements
from engines.tensorrt_runtime import check_in_profile
from scott.decoder import TINY_SUBFOLDER, resolve_decoder
from scott.models import build_model, save_model
from scott.pipeline import ModelInfo
from server.params import parse_size
from tests.support.fake_tensorrt import fake_tensorrt

H100 = BuildTarget("10.7.0", "NVIDIA H100 80GB HBM3", "9.0")
A100 = BuildTarget("10.7.0", "NVIDIA A100-SXM4-80GB", "8.0")
MISSING = missing_requirements(torch.device("cuda"))
needs_gpu = pytest.mark.skipif(bool(MISSING), reason=f"{REQUIREMENT}; found: {'; '.join(MISSING)}")


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    return save_model(build_model("tiny", seed=0), tmp_path_factory.mktemp("model") / "tiny")


@pytest.fixture(scope="module")
def info(model_dir) -> ModelInfo:
    from scott.models import load_model

    return ModelInfo.from_bundle(load_model(model_dir))


# -- profiles --------------------------------------------------------------------------------------


def test_profiles_cover_batch_and_the_models_sizes(info):
    assert (info.min_size, info.default_size, info.max_size, info.vae_scale_factor) == (32, 64, 128, 8)
    profiles = build_profiles(info, text_dim=128, max_batch_size=8)
    assert profiles["text_encoder"].to_json() == {"input_ids": {"min": [1, 77], "opt": [1, 77], "max": [8, 77]}}
    unet = profiles["unet"].to_json()
    assert list(unet) == ["sample", "timestep", "encoder_hidden_states", "timestep_cond"]
    assert unet["sample"] == {"min": [1, 4, 4, 4], "opt": [1, 4, 8, 8], "max": [8, 4, 16, 16]}
    assert unet["timestep"] == {"min": [1], "opt": [1], "max": [8]}
    assert unet["timestep_cond"]["max"] == [8, 64]
    assert profiles["vae_decoder"].to_json()["latents"] == unet["sample"]


def test_profiles_from_explicit_sizes_and_opt_batch(info):
    profiles = build_profiles(
        info, 128, max_batch_size=4, sizes=[parse_size("64"), parse_size("128x64")], opt_batch_size=2
    )
    # Latents are (height, width): 64x64 px -> 8x8, 128 wide x 64 high -> 8x16.
    assert profiles["unet"].to_json()["sample"] == {"min": [1, 4, 8, 8], "opt": [2, 4, 8, 8], "max": [4, 4, 8, 16]}
    assert profiles["unet"].contains("sample", (3, 4, 8, 12))
    assert not profiles["unet"].contains("sample", (5, 4, 8, 8))
    assert not profiles["unet"].contains("sample", (1, 4, 16, 8))  # 64 wide x 128 high was not asked for


def test_cfg_models_double_the_unet_batch(info):
    cfg = dataclasses.replace(info, guidance_embedding_dim=None)
    profiles = build_profiles(cfg, 128, max_batch_size=4, opt_batch_size=2)
    unet = profiles["unet"].to_json()
    assert "timestep_cond" not in unet
    assert unet["sample"]["min"][0] == 1 and unet["sample"]["opt"][0] == 4 and unet["sample"]["max"][0] == 8
    assert profiles["text_encoder"].to_json()["input_ids"]["max"] == [4, 77]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"max_batch_size": 0}, "max_batch_size"),
        ({"max_batch_size": 4, "sizes": [(64, 72)]}, "size 64x72: height 72"),
        ({"max_batch_size": 4, "sizes": [(256, 256)]}, "size 256x256"),
        ({"max_batch_size": 4, "opt_batch_size": 5}, "opt_batch_size"),
    ],
)
def test_profile_errors(info, kwargs, message):
    with pytest.raises(ValueError, match=message):
        build_profiles(info, 128, **kwargs)


def test_parse_size():
    assert parse_size("512x768") == (512, 768) and parse_size("640") == (640, 640)
    for bad in ("512x", "axb", "1x2x3", ""):
        with pytest.raises(ValueError):
            parse_size(bad)


def test_check_in_profile_names_the_input():
    profile = Profile((("sample", (1, 4, 8, 8), (1, 4, 8, 8), (4, 4, 16, 16)),))
    check_in_profile("unet", profile, {"sample": torch.zeros(4, 4, 16, 8)})
    with pytest.raises(ValueError, match=r"unet.sample has shape \(5, 4, 8, 8\), outside .*--max-batch-size"):
        check_in_profile("unet", profile, {"sample": torch.zeros(5, 4, 8, 8)})


# -- missing TensorRT / CUDA is an error, never a fallback --------------------------------------------


@pytest.mark.skipif(not MISSING, reason="this host has TensorRT and a CUDA GPU")
def test_backend_without_tensorrt_names_what_is_missing(model_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("SCOTT_CACHE_DIR", str(tmp_path / "cache"))
    with pytest.raises(RuntimeError) as raised:
        load_pipeline(model_dir, LoadOptions(backend="tensorrt"))
    message = str(raised.value)
    assert message.startswith(REQUIREMENT) and "pip install scott-serve[tensorrt]" in message
    assert "found: " in message and any(m in message for m in MISSING)
    with pytest.raises(RuntimeError, match="tensorrt backend needs"):
        build_engines(model_dir, tmp_path / "engines")
    assert not (tmp_path / "cache").exists() and not (tmp_path / "engines").exists()  # failed before any work


def test_cpu_device_is_rejected_for_tensorrt():
    problems = missing_requirements(torch.device("cpu"))
    assert "device 'cpu' is not a CUDA device" in problems


# -- planning, building into the cache, the index ---------------------------------------------------


@pytest.fixture
def fake_export(tmp_path, model_dir, info) -> OnnxExport:
    """An export folder with stand-in graphs: planning hashes the files but never runs them."""
    root = tmp_path / "onnx"
    root.mkdir()
    networks = {}
    for name in NETWORKS:
        graph = helper.make_graph(
            [helper.make_node("Identity", ["x"], ["y"])],
            name,
            [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch"])],
            [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch"])],
        )
        onnx.save_model(helper.make_model(graph), str(root / f"{name}.onnx"))
        networks[name] = {"file": f"{name}.onnx"}
    manifest = {
        "format": MANIFEST_FORMAT,
        "source": {"fingerprint": model_fingerprint(model_dir)},
        "model_info": info.model_facts(),
        "dims": {
            "text_tokens": 77,
            "text_dim": 128,
            "latent_channels": 4,
            "vae_scale_factor": 8,
            "guidance_embedding_dim": 64,
        },
        "networks": networks,
    }
    (root / MANIFEST).write_text(json.dumps(manifest))
    return OnnxExport.read(root)


class RecordingBuilder:
    """Stands in for TensorRT's builder (not installable here): records what it was asked to build."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, Profile, str]] = []

    def __call__(self, onnx_path: Path, plan_path: Path, profile: Profile, precision: str, timing_cache: Path) -> None:
        self.calls.append((onnx_path.stem, profile, precision))
        plan_path.write_bytes(f"plan of {onnx_path.name} {profile.to_json()}".encode())


def test_build_engine_set_builds_once_and_indexes(fake_export, model_dir, tmp_path):
    builder = RecordingBuilder()
    out = tmp_path / "engines"
    built = build_engine_set(fake_export, out, H100, max_batch_size=4, builder=builder)
    assert [c[0] for c in builder.calls] == list(NETWORKS) and {c[2] for c in builder.calls} == {"f16"}
    expected = build_profiles(fake_export.info(), 128, 4)
    assert {name: prof for name, prof, _ in builder.calls} == expected

    loaded = EngineSet.read(out, H100)
    assert loaded == built
    assert loaded.model_info == fake_export.info() and loaded.dims == fake_export.dims
    plans = check_engine_set(loaded, model_dir, H100)
    assert set(plans) == set(NETWORKS) and all(p.is_file() and p.parent == out for p in plans.values())

    # Same request again: everything comes from the cache.
    build_engine_set(fake_export, out, H100, max_batch_size=4, builder=builder)
    assert len(builder.calls) == 3
    # A larger max batch is another profile, hence another key: built anew beside the old plans.
    build_engine_set(fake_export, out, H100, max_batch_size=8, builder=builder)
    assert len(builder.calls) == 6 and len(list(out.glob("*.plan"))) == 6


def test_engines_from_another_gpu_are_refused(fake_export, model_dir, tmp_path):
    out = tmp_path / "engines"
    engine_set = build_engine_set(fake_export, out, H100, max_batch_size=2, builder=RecordingBuilder())
    with pytest.raises(EngineCacheError, match=r"gpu_name: wanted 'NVIDIA A100.*built 'NVIDIA H100"):
        check_engine_set(engine_set, model_dir, A100)
    newer = dataclasses.replace(H100, tensorrt_version="10.8.0")
    with pytest.raises(EngineCacheError, match="tensorrt_version"):
        check_engine_set(engine_set, model_dir, newer)


def test_engines_of_other_weights_are_refused(fake_export, model_dir, tmp_path):
    engine_set = build_engine_set(fake_export, tmp_path / "engines", H100, builder=RecordingBuilder())
    other = save_model(build_model("tiny", seed=1), tmp_path / "other")
    with pytest.raises(ValueError, match="other weights"):
        check_engine_set(engine_set, other, H100)


def test_engines_of_the_full_decoder_are_refused_for_the_tiny_one(fake_export, model_dir, tmp_path):
    engine_set = build_engine_set(fake_export, tmp_path / "engines", H100, builder=RecordingBuilder())
    with_tiny = tmp_path / "with-tiny"
    shutil.copytree(model_dir, with_tiny)
    save_model(build_model("tiny", seed=0, tiny_decoder=True), tmp_path / "random")
    shutil.copytree(tmp_path / "random" / TINY_SUBFOLDER, with_tiny / TINY_SUBFOLDER)
    check_engine_set(engine_set, with_tiny, H100)  # the same weights, full decoder: usable
    with pytest.raises(ValueError, match="with the tiny decoder"):
        check_engine_set(engine_set, with_tiny, H100, resolve_decoder(with_tiny, "tiny"))
    # Each decoder gets its own engine folder in the cache (named by the fingerprint).
    assert model_fingerprint(with_tiny) != model_fingerprint(with_tiny, resolve_decoder(with_tiny, "tiny"))


def test_plan_keys_follow_the_onnx_content(fake_export):
    before = plan_engines(fake_export, H100, max_batch_size=2)
    path = fake_export.path("unet")
    model = onnx.load(str(path))
    model.graph.node[0].name = "renamed"
    onnx.save_model(model, str(path))
    after = plan_engines(fake_export, H100, max_batch_size=2)
    assert after["unet"].key.digest() != before["unet"].key.digest()
    assert after["vae_decoder"].key == before["vae_decoder"].key
    with pytest.raises(ValueError, match="precision"):
        plan_engines(fake_export, H100, precision="int4")


# -- on a GPU host with TensorRT: real engines against PyTorch -------------------------------------


@pytest.fixture(scope="module")
def trt_backend(model_dir, tmp_path_factory):
    from engines.tensorrt_runtime import TensorRTBackend

    out = tmp_path_factory.mktemp("engines")
    build_engines(
        model_dir, out, max_batch_size=4, sizes=[(32, 32), (64, 64)], onnx_dir=tmp_path_factory.mktemp("onnx")
    )
    return TensorRTBackend(out, model_dir, "cuda")


@pytest.fixture(scope="module")
def fp32_reference(model_dir):
    from engines.torch_backend import TorchBackend
    from scott.models import load_model

    return TorchBackend(load_model(model_dir, torch.float32), torch.device("cuda"), torch.float32)


@pytest.mark.gpu
@needs_gpu
def test_engines_match_pytorch_within_fp16_tolerance(trt_backend, fp32_reference):
    gen = torch.Generator().manual_seed(0)
    ids = torch.randint(0, 49408, (3, 77), generator=gen)
    latents = torch.randn(3, 4, 8, 8, generator=gen).cuda()
    text = fp32_reference.encode_text(ids)
    timesteps = torch.tensor([999, 499, 19], device="cuda")
    cond = torch.randn(3, 64, generator=gen).cuda()
    pairs = {
        "text": (trt_backend.encode_text(ids.cuda()), text),
        "unet": (
            trt_backend.predict(latents, timesteps, text, cond),
            fp32_reference.predict(latents, timesteps, text, cond),
        ),
        "vae": (trt_backend.decode(latents), fp32_reference.decode(latents)),
    }
    for name, (actual, expected) in pairs.items():
        assert actual.shape == expected.shape and actual.dtype == torch.float32, name
        error = (actual - expected).abs()
        scale = expected.abs().max().item()
        assert error.max().item() <= 2e-2 * max(1.0, scale), (name, error.max().item())
        assert error.mean().item() <= 2e-3 * max(1.0, scale), (name, error.mean().item())


@pytest.mark.gpu
@needs_gpu
def test_cuda_graph_replay_matches_eager_and_returns_fresh_tensors(trt_backend, model_dir):
    from engines.tensorrt_runtime import TensorRTBackend

    eager = TensorRTBackend(trt_backend.engine_set.root, model_dir, "cuda", use_cuda_graphs=False)
    gen = torch.Generator().manual_seed(1)
    for batch in (1, 2):
        inputs = [torch.randn(batch, 4, 8, 8, generator=gen).cuda() for _ in range(4)]
        outs = [trt_backend.decode(z) for z in inputs]  # runs 1-2 eager, then the captured graph
        assert trt_backend.engines["vae_decoder"]._slots[((batch, 4, 8, 8),)].graph is not None
        for z, out in zip(inputs, outs, strict=True):
            torch.testing.assert_close(out, eager.decode(z), atol=1e-3, rtol=1e-3)
        assert len({o.data_ptr() for o in outs}) == len(outs)  # never a shared internal buffer
    with pytest.raises(ValueError, match="outside the engine's profile"):
        trt_backend.decode(torch.zeros(5, 4, 8, 8, device="cuda"))


@pytest.mark.gpu
@needs_gpu
def test_pipeline_on_tensorrt_matches_torch(trt_backend, model_dir):
    from scott.pipeline import ImageRequest, TextToImagePipeline

    reference = load_pipeline(model_dir, LoadOptions(backend="torch", device="cuda"))
    engines = TextToImagePipeline(trt_backend, reference.tokenizer, reference.schedule, reference.info)
    requests = [
        ImageRequest("a red circle", seed=i, steps=4, guidance_scale=6.0, gamma=0.3, width=64, height=64)
        for i in range(3)
    ]
    expected = reference.generate(requests).images.astype(np.float64)
    actual = engines.generate(requests).images.astype(np.float64)
    assert np.abs(actual - expected).mean() < 3 / 255


# -- the builder against TensorRT 10.x and 11.x API surfaces (tests/support/fake_tensorrt.py) -------


def _build(monkeypatch, trt, tmp_path: Path, name: str, precision: str = "f16", timing: Path | None = None) -> Path:
    from engines.tensorrt_build import build_plan

    monkeypatch.setitem(sys.modules, "tensorrt", trt)
    onnx_path = tmp_path / f"{name}.onnx"
    onnx_path.write_bytes(b"graph")
    plan = tmp_path / f"{name}.plan"
    profile = Profile((("sample", (1, 4, 8, 8), (1, 4, 8, 8), (4, 4, 16, 16)),))
    build_plan(onnx_path, plan, profile, precision, timing or tmp_path / "timing.cache")
    return plan


def test_tensorrt_10_builds_fp16_and_grows_the_timing_cache(monkeypatch, tmp_path):
    trt = fake_tensorrt("10.16.1.11")
    timing = tmp_path / "timing.cache"
    plan = _build(monkeypatch, trt, tmp_path, "unet", timing=timing)
    assert plan.read_bytes() == f"plan of {tmp_path / 'unet.onnx'}".encode()
    ((_, flags, shapes),) = trt.built
    assert flags == {"FP16"} and shapes == {"sample": ((1, 4, 8, 8), (1, 4, 8, 8), (4, 4, 16, 16))}
    _build(monkeypatch, trt, tmp_path, "vae_decoder", precision="f32", timing=timing)
    assert trt.built[1][1] == set()  # fp32: no precision flag
    entries = json.loads(timing.read_bytes())["entries"]
    assert entries == [str(tmp_path / "unet.onnx"), str(tmp_path / "vae_decoder.onnx")]  # merged, not replaced


def test_tensorrt_11_builds_strongly_typed_networks_without_weak_typing_flags(monkeypatch, tmp_path):
    """TensorRT 11 has no BuilderFlag.FP16 (the old builder raised AttributeError there after parsing): the network
    is created strongly typed and the engine computes what its graph says (an fp16 export for fp16)."""
    from engines.tensorrt_env import unsupported_version

    trt = fake_tensorrt("11.4.0")
    assert not hasattr(trt.BuilderFlag, "FP16")
    _build(monkeypatch, trt, tmp_path, "unet", precision="f16")
    assert trt.built[0][1] == set()  # no precision flag: the graph decides
    assert trt.network_flags == [1 << trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED.value]
    ten = fake_tensorrt("10.16.1.11")
    _build(monkeypatch, ten, tmp_path, "unet", precision="f16")
    assert ten.network_flags == [0] and ten.built[0][1] == {"FP16"}  # 10.x: weak typing from the fp32 graph
    assert unsupported_version("11.4.0") is None and unsupported_version("10.16.1.11") is None
    assert "older than 10.1" in unsupported_version("8.6.1") and "older than 10.1" in unsupported_version("10.0.1")
    assert "newer than" in unsupported_version("12.0.0")
    monkeypatch.setitem(sys.modules, "tensorrt", fake_tensorrt("12.0.0"))
    monkeypatch.setattr("importlib.util.find_spec", lambda name: object())
    assert any("newer than" in p for p in missing_requirements(torch.device("cuda")))


def test_strongly_typed_plans_take_each_network_from_the_export_of_its_precision(fake_export, tmp_path):
    """fp16 networks from the fp16 export, an fp32 VAE from the fp32 one: keys follow the graph really built."""
    fp16_root = tmp_path / "onnx-f16"
    shutil.copytree(fake_export.root, fp16_root)
    manifest = json.loads((fp16_root / MANIFEST).read_text())
    (fp16_root / MANIFEST).write_text(json.dumps({**manifest, "precision": "f16"}))
    other = onnx.load(str(fp16_root / "unet.onnx"))
    other.graph.name = "unet in fp16"  # another graph, as an fp16 export's is
    onnx.save_model(other, str(fp16_root / "unet.onnx"))
    fp16 = OnnxExport.read(fp16_root)
    graphs = {"f32": fake_export, "f16": fp16}
    planned = plan_engines(fake_export, H100, 2, vae_precision="f32", graphs=graphs)
    assert planned["unet"].onnx_path == fp16.path("unet") and planned["vae_decoder"].onnx_path == fake_export.path(
        "vae_decoder"
    )
    weak = plan_engines(fake_export, H100, 2, vae_precision="f32")
    assert planned["unet"].key != weak["unet"].key and planned["vae_decoder"].key == weak["vae_decoder"].key
    with pytest.raises(ValueError, match="needs the f16 export"):
        plan_engines(fake_export, H100, 2, graphs={"f32": fake_export})


def test_a_timing_cache_tensorrt_cannot_use_stops_the_build(monkeypatch, tmp_path):
    damaged = tmp_path / "damaged.cache"
    damaged.write_bytes(b"\x00 not a cache")
    with pytest.raises(RuntimeError, match=r"could not read the timing cache .*damaged\.cache"):
        _build(monkeypatch, fake_tensorrt("10.16.1.11"), tmp_path, "unet", timing=damaged)
    other_gpu = tmp_path / "a100.cache"
    other_gpu.write_bytes(json.dumps({"target": "A100", "entries": []}).encode())
    with pytest.raises(RuntimeError, match=r"rejected the timing cache .*a100\.cache"):
        _build(monkeypatch, fake_tensorrt("10.16.1.11", target="H100"), tmp_path, "unet", timing=other_gpu)


def test_each_target_has_its_own_index_and_timing_cache_in_one_folder(fake_export, model_dir, tmp_path):
    """Pods with different GPUs (or TensorRT versions) sharing one cache volume do not overwrite each other."""
    from engines.tensorrt_build import index_path, timing_cache_path

    out = tmp_path / "engines"
    timings: list[Path] = []

    def builder(onnx_path: Path, plan_path: Path, profile: Profile, precision: str, timing_cache: Path) -> None:
        timings.append(timing_cache)
        plan_path.write_bytes(b"plan")

    build_engine_set(fake_export, out, H100, max_batch_size=2, builder=builder)
    build_engine_set(fake_export, out, A100, max_batch_size=2, builder=builder)
    assert set(timings) == {timing_cache_path(out, H100), timing_cache_path(out, A100)}
    assert index_path(out, H100) != index_path(out, A100)
    assert EngineSet.read(out, H100).target == H100 and EngineSet.read(out, A100).target == A100
    assert index_path(out, H100).name == "engines-nvidia-h100-80gb-hbm3-sm90-trt10.7.0.json"
    l40 = BuildTarget("10.7.0", "NVIDIA L40S", "8.9")
    with pytest.raises(FileNotFoundError, match=r"no TensorRT engines for this GPU .*engines-nvidia-a100"):
        EngineSet.read(out, l40)


def test_each_shape_replays_its_own_graph_on_its_own_context(tmp_path):
    """A, B, A, B: every call gives its own shape's result, eager or replayed (one shared context did not: A's graph
    then ran with B's bindings), and all contexts share one scratch buffer."""
    from types import SimpleNamespace

    from engines.shapes import ModelDims, network_specs
    from engines.tensorrt_runtime import WARMUP_RUNS, TensorRTEngine
    from tests.support.fake_tensorrt import FakeEngine, ReplayGraph, fake_runtime

    spec = network_specs(ModelDims(77, 128, 4, 2, 64))["vae_decoder"]
    plan = tmp_path / "vae.plan"
    plan.write_bytes(b"plan")
    fake = FakeEngine(scale=2)
    trt, runtime = fake_runtime("10.16.1.11", fake)
    graphs: list[ReplayGraph] = []

    def capture(work, stream):
        graphs.append(ReplayGraph(work, stream))
        return graphs[-1]

    engine = TensorRTEngine(plan, spec, torch.device("cpu"), capture=capture)
    engine.load(runtime, trt)
    engine.activate()
    stream = SimpleNamespace(cuda_stream=0)
    shapes = {"A": (1, 4, 8, 8), "B": (4, 4, 16, 16)}

    def expected(shape: tuple[int, ...], latents: torch.Tensor) -> float:
        return float(latents.sum()) + 1000.0 * shape[0] + shape[2]

    for round_ in range(WARMUP_RUNS + 3):
        for name, shape in shapes.items():
            latents = torch.full(shape, float(round_ + 1))
            (images,) = engine.infer({"latents": latents}, stream).values()
            assert images.shape == (shape[0], 3, shape[2] * 2, shape[3] * 2)
            assert torch.all(images == expected(shape, latents)), (name, round_)
    assert len(graphs) == 2 and all(g.replays == 3 for g in graphs)
    assert len(fake.contexts) == 2  # one per shape, never rebound
    assert {c.shapes["latents"] for c in fake.contexts} == set(shapes.values())
    assert len({c.device_memory for c in fake.contexts}) == 1  # one scratch buffer for both


def test_the_vae_profile_stops_where_tensorrts_tensor_volume_does():
    """SD-1.5's decoder holds 256 channels at full size: 8 images of 1024x1024 are 2^31 elements, one past TensorRT's
    limit, so its profile stops at 7 (the runtime decodes a batch of 8 in two parts); the UNet's stays at 8."""
    from engines.shapes import vae_max_batch, vae_peak_channels

    sd15 = build_model("sd15", device="meta")
    assert vae_peak_channels(sd15.vae.config.block_out_channels) == 256
    assert vae_peak_channels([16, 64]) == 64  # the tiny preset: its last block's input, at full size
    info = ModelInfo.from_bundle(sd15)
    assert info.max_size == 1024
    profiles = build_profiles(info, 768, max_batch_size=8, vae_peak=256)
    assert profiles["vae_decoder"].to_json()["latents"]["max"] == [7, 4, 128, 128]
    assert profiles["unet"].to_json()["sample"]["max"] == [8, 4, 128, 128]
    assert build_profiles(info, 768, 8, sizes=[(512, 512)], vae_peak=256)["vae_decoder"].shapes[0][3][0] == 8
    with pytest.raises(ValueError, match="past TensorRT's"):
        vae_max_batch(256, 4096, 4096, 1)
