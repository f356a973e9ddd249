"""Model folders: presets have the real architectures, folders round-trip, SD-layout folders load."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from scott.decoder import resolve_decoder
from scott.models import PRESETS, build_model, load_model, save_model
from scott.tokenizer import load_tokenizer, write_clip_tokenizer


def test_clip_tokenizer_ids_equal_sd15(tmp_path: Path) -> None:
    tokenizer = load_tokenizer(write_clip_tokenizer(tmp_path))
    assert tokenizer("a photo of a cat").input_ids == [49406, 320, 1125, 539, 320, 2368, 49407]
    assert tokenizer.model_max_length == 77
    assert len(tokenizer) == 49408


def test_sd15_preset_has_the_real_parameter_counts() -> None:
    """SD-1.5's text encoder, VAE and UNet, plus LCM-Dreamshaper's 256-d guidance projection (256 x 320)."""
    bundle = build_model("sd15", device="meta")
    count = {name: sum(p.numel() for p in getattr(bundle, name).parameters()) for name in ("text_encoder", "vae")}
    assert count == {"text_encoder": 123_060_480, "vae": 83_653_863}
    assert sum(p.numel() for p in bundle.unet.parameters()) == 859_520_964 + 256 * 320
    assert bundle.default_size == 512 and bundle.has_guidance_embedding


def test_folder_round_trip_in_fp16(tmp_path: Path) -> None:
    bundle = build_model("tiny", seed=3, tiny_decoder=True)
    save_model(bundle, tmp_path / "m")
    assert {p.name for p in (tmp_path / "m").iterdir()} >= {"model_index.json", *PRESETS["tiny"].keys() - {"text"}}
    loaded = load_model(tmp_path / "m", decoder=resolve_decoder(tmp_path / "m", "tiny"))
    assert json.loads((tmp_path / "m" / "scheduler" / "scheduler_config.json").read_text())["prediction_type"] == (
        "v_prediction"
    )
    for name in ("text_encoder", "unet", "vae", "tiny_decoder"):
        ours, theirs = getattr(bundle, name).state_dict(), getattr(loaded, name).state_dict()
        assert ours.keys() == theirs.keys()
        for key, value in ours.items():
            torch.testing.assert_close(theirs[key], value.half().float(), rtol=0, atol=0)
    assert not any(p.requires_grad for p in loaded.unet.parameters())


def test_same_seed_same_weights() -> None:
    a, b, c = build_model("tiny", seed=0), build_model("tiny", seed=0), build_model("tiny", seed=1)
    weight = "conv_in.weight"
    assert torch.equal(a.unet.state_dict()[weight], b.unet.state_dict()[weight])
    assert not torch.equal(a.unet.state_dict()[weight], c.unet.state_dict()[weight])


def test_missing_parts_are_named(tmp_path: Path) -> None:
    (tmp_path / "unet").mkdir()
    with pytest.raises(FileNotFoundError, match="missing tokenizer/, text_encoder/, vae/, scheduler/"):
        load_model(tmp_path)
    with pytest.raises(ValueError, match="unknown preset"):
        build_model("sdxl")
