"""One precision vocabulary and one load-options object: every combination rule checked once, at start."""

from __future__ import annotations

import pytest
import torch
from pydantic import ValidationError

from engines.load_options import DEFAULT_MAX_BATCH_SIZE, LoadOptions
from scott.precision import Precision
from server.settings import ServerSettings


def test_a_precision_is_named_one_way_and_old_names_are_deprecated_aliases() -> None:
    assert [p.value for p in Precision] == ["auto", "f32", "bf16", "f16"]
    assert Precision.parse("BF16") is Precision.BF16 and Precision.parse(Precision.F16) is Precision.F16
    with pytest.warns(FutureWarning, match="'fp16' is deprecated; write 'f16'"):
        assert Precision.parse("fp16") is Precision.F16
    with pytest.raises(ValueError, match="unknown precision 'int4'; available: auto, f32, bf16, f16"):
        Precision.parse("int4")
    assert Precision.F16.dtype is torch.float16 and Precision.of_dtype(torch.bfloat16) is Precision.BF16
    with pytest.raises(ValueError, match="auto has no dtype"):
        _ = Precision.AUTO.dtype


def test_settings_make_the_load_options_once_with_the_one_default_batch() -> None:
    settings = ServerSettings(backend="torch", precision="bf16", threads=2, decoder="tiny")
    assert settings.max_batch_size == DEFAULT_MAX_BATCH_SIZE == LoadOptions().max_batch_size
    assert settings.load_options() == LoadOptions(
        backend="torch", precision=Precision.BF16, threads=2, decoder="tiny", max_batch_size=DEFAULT_MAX_BATCH_SIZE
    )
    with pytest.raises(AttributeError):
        settings.load_options().precision = Precision.F32  # frozen: a loader cannot change what settings said


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"backend": "onnx", "precision": "bf16"}, "the onnx backend runs its export's own precision"),
        ({"backend": "tensorrt", "precision": "f32"}, "the tensorrt backend runs its export's own precision"),
        ({"backend": "openvino", "vae_precision": "f32"}, "vae_precision applies to the tensorrt backend"),
        ({"backend": "tensorrt", "vae_precision": "bf16"}, "vae_precision must be f32 or f16"),
        ({"backend": "onnx", "compile": True}, "compile applies to the torch backend, not onnx"),
        ({"backend": "jax"}, "unknown backend 'jax'"),
        ({"precision": "int4"}, "unknown precision 'int4'"),
    ],
)
def test_a_combination_no_backend_runs_fails_in_settings_naming_it(fields, message) -> None:
    with pytest.raises(ValueError, match=message):
        LoadOptions(**fields)
    with pytest.raises(ValidationError, match=message):
        ServerSettings(**fields)


def test_rules_that_need_the_backend_are_checked_once_the_default_is_named() -> None:
    unresolved = LoadOptions(compile=True)  # the default backend is torch on CUDA: allowed until it is known
    assert unresolved.with_backend("torch").compile
    with pytest.raises(ValueError, match="compile applies to the torch backend, not openvino"):
        unresolved.with_backend("openvino")
