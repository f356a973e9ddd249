"""The engine cache: keys, sidecar checks, atomic builds, and the per-key lock across threads and processes."""

from __future__ import annotations

import dataclasses
import json
import multiprocessing
import threading
import time
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from engines.engine_cache import BuildTarget, EngineCache, EngineCacheError, EngineKey, exclusive, onnx_sha256

H100 = BuildTarget(tensorrt_version="10.7.0", gpu_name="NVIDIA H100 80GB HBM3", compute_capability="9.0")
PROFILE = {"sample": {"min": [1, 4, 8, 8], "opt": [1, 4, 8, 8], "max": [8, 4, 16, 16]}}


def _key(**overrides) -> EngineKey:
    key = EngineKey.create("unet", "ab" * 32, H100, "f16", PROFILE)
    return dataclasses.replace(key, **overrides)


def _write_plan(payload: bytes) -> callable:
    def build(path: Path) -> None:
        path.write_bytes(payload)

    return build


def test_key_digest_is_stable_and_covers_every_field():
    assert _key().digest() == _key().digest()
    # Profile JSON is canonical: key order does not matter.
    reordered = {"sample": {"max": [8, 4, 16, 16], "opt": [1, 4, 8, 8], "min": [1, 4, 8, 8]}}
    assert EngineKey.create("unet", "ab" * 32, H100, "f16", reordered).digest() == _key().digest()
    variants = [
        _key(network="vae_decoder"),
        _key(onnx_sha256="cd" * 32),
        _key(tensorrt_version="10.8.0"),
        _key(gpu_name="NVIDIA A100-SXM4-80GB"),
        _key(compute_capability="8.0"),
        _key(precision="f32"),
        EngineKey.create("unet", "ab" * 32, H100, "f16", {"sample": {**PROFILE["sample"], "max": [4, 4, 16, 16]}}),
    ]
    digests = {k.digest() for k in variants}
    assert len(digests) == len(variants) and _key().digest() not in digests


def test_build_then_load_checks_sidecar(tmp_path):
    cache = EngineCache(tmp_path)
    plan = cache.get_or_build(_key(), _write_plan(b"engine-bytes"))
    assert plan.read_bytes() == b"engine-bytes"
    sidecar = json.loads(cache.sidecar_path(_key()).read_text())
    assert sidecar["key"]["gpu_name"] == H100.gpu_name and sidecar["plan_bytes"] == len(b"engine-bytes")
    assert cache.validate(_key()) == plan
    # The same engine asked for on another GPU is another key: not found, and a plan copied over
    # under the H100's name fails the sidecar check naming the field.
    a100 = _key(gpu_name="NVIDIA A100-SXM4-80GB", compute_capability="8.0")
    assert cache.lookup(a100) is None
    with pytest.raises(
        EngineCacheError, match=r"gpu_name: wanted 'NVIDIA A100.*built 'NVIDIA H100.*compute_capability"
    ):
        cache.validate(a100, plan=plan)


def test_corrupt_or_orphaned_plans_are_rebuilt(tmp_path):
    cache = EngineCache(tmp_path)
    plan = cache.get_or_build(_key(), _write_plan(b"good engine"))
    plan.write_bytes(b"evil engine")  # same size, different bytes
    with pytest.raises(EngineCacheError, match="does not match the hash"):
        cache.validate(_key())
    plan.write_bytes(b"short")
    with pytest.raises(EngineCacheError, match="bytes, its sidecar says"):
        cache.validate(_key())
    assert cache.get_or_build(_key(), _write_plan(b"rebuilt")).read_bytes() == b"rebuilt"

    cache.sidecar_path(_key()).unlink()  # a plan without a sidecar is never trusted
    with pytest.raises(EngineCacheError, match="has no sidecar"):
        cache.validate(_key())
    assert cache.get_or_build(_key(), _write_plan(b"again")).read_bytes() == b"again"

    cache.sidecar_path(_key()).write_text("{not json")
    assert cache.lookup(_key()) is None


def test_failed_build_leaves_nothing_and_releases_the_lock(tmp_path):
    cache = EngineCache(tmp_path)

    def broken(path: Path) -> None:
        path.write_bytes(b"half an eng")
        raise RuntimeError("builder crashed")

    with pytest.raises(RuntimeError, match="builder crashed"):
        cache.get_or_build(_key(), broken)
    assert not cache.plan_path(_key()).exists() and not cache.sidecar_path(_key()).exists()
    assert [p.name for p in tmp_path.iterdir() if p.suffix != ".lock"] == []
    with pytest.raises(EngineCacheError, match="produced no engine"):
        cache.get_or_build(_key(), lambda path: None)
    assert cache.get_or_build(_key(), _write_plan(b"ok")).read_bytes() == b"ok"  # lock was released


def test_threads_contending_build_once(tmp_path):
    cache = EngineCache(tmp_path)
    builds: list[float] = []

    def slow_build(path: Path) -> None:
        builds.append(time.monotonic())
        time.sleep(0.3)
        path.write_bytes(b"built once")

    results: list[Path] = []
    threads = [
        threading.Thread(target=lambda: results.append(cache.get_or_build(_key(), slow_build))) for _ in range(4)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(builds) == 1
    assert len(results) == 4 and len(set(results)) == 1


def _build_in_process(root: str, log: str, barrier) -> None:
    def slow_build(path: Path) -> None:
        with open(log, "a") as handle:
            handle.write(f"start {time.monotonic()}\n")
        time.sleep(0.5)
        path.write_bytes(b"built by one process")
        with open(log, "a") as handle:
            handle.write(f"end {time.monotonic()}\n")

    barrier.wait()
    plan = EngineCache(root).get_or_build(_key(), slow_build)
    assert plan.read_bytes() == b"built by one process"


def test_processes_contending_build_once(tmp_path):
    # fork: the children start with this module imported (spawn would re-import torch per child).
    ctx = multiprocessing.get_context("fork")
    barrier = ctx.Barrier(3)
    log = tmp_path / "builds.log"
    procs = [ctx.Process(target=_build_in_process, args=(str(tmp_path / "cache"), str(log), barrier)) for _ in range(3)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=60)
    assert [p.exitcode for p in procs] == [0, 0, 0]
    assert [line.split()[0] for line in log.read_text().splitlines()] == ["start", "end"]


def test_exclusive_serializes_critical_sections(tmp_path):
    inside, overlaps = [0], [0]

    def worker() -> None:
        for _ in range(5):
            with exclusive(tmp_path / "x.lock", timeout_s=10):
                inside[0] += 1
                overlaps[0] = max(overlaps[0], inside[0])
                time.sleep(0.005)
                inside[0] -= 1

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert overlaps[0] == 1


def test_onnx_hash_covers_external_data(tmp_path):
    weight = numpy_helper.from_array(np.arange(4096, dtype=np.float32).reshape(64, 64), name="w")
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["y"])],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 64])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 64])],
        initializer=[weight],
    )
    path = tmp_path / "m.onnx"
    onnx.save_model(helper.make_model(graph), str(path), save_as_external_data=True, location="m.onnx.data")
    before = onnx_sha256(path)
    data = tmp_path / "m.onnx.data"
    raw = bytearray(data.read_bytes())
    raw[100] ^= 0xFF  # change one weight, not the graph file
    data.write_bytes(bytes(raw))
    assert onnx_sha256(path) != before
