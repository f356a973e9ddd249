"""Model folders: presets have the real architectures, folders round-trip, SD-layout folders load."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from scott.decoder import resolve_decoder
from scott.models import (
    PRESETS,
    SERVING_FILE,
    ServingCard,
    build_model,
    load_model,
    load_serving_card,
    save_model,
    write_serving_card,
)
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


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("{", "not valid JSON"),
        ('["a red circle"]', "JSON object"),
        ('{"examples": [], "size": [64]}', "JSON object"),
        ('{"examples": "a red circle"}', "examples"),
        ('{"examples": ["  "]}', "examples"),
        ('{"sizes": []}', "sizes"),
        ('{"sizes": [64, true]}', "sizes"),
        ('{"sizes": ["64"]}', "sizes"),
    ],
)
def test_a_malformed_serving_card_names_its_file(tmp_path: Path, text: str, words: str) -> None:
    (tmp_path / SERVING_FILE).write_text(text)
    with pytest.raises(ValueError, match=words) as caught:
        load_serving_card(tmp_path)
    assert SERVING_FILE in str(caught.value)


def test_a_serving_card_round_trips_and_a_folder_without_one_gets_the_defaults(tmp_path: Path) -> None:
    assert load_serving_card(tmp_path) == ServingCard(examples=(), sizes=None)
    card = ServingCard(examples=("a red circle", "a small blue star"), sizes=(64, 32))
    write_serving_card(tmp_path, card)
    assert load_serving_card(tmp_path) == ServingCard(examples=card.examples, sizes=(32, 64))  # sorted


def test_declared_sizes_must_be_ones_the_model_makes_and_hold_the_default() -> None:
    from scott.pipeline import ModelInfo

    info = ModelInfo.from_bundle(build_model("tiny", device="meta"))
    assert info.check_size(128, 96) is None  # no card: every multiple of 16 from 32 to 128
    served = info.with_card(ServingCard(examples=("a red circle",), sizes=(48, 64)))
    assert (served.sizes, served.examples) == ((48, 64), ("a red circle",))
    assert served.check_size(48, 64) is None
    assert served.check_size(64, 128) == "height 128 is not supported: must be one of 48, 64"
    with pytest.raises(ValueError, match=r"sizes \[100\] cannot be made"):
        info.with_card(ServingCard(sizes=(64, 100)))
    with pytest.raises(ValueError, match="must include the default size 64"):
        info.with_card(ServingCard(sizes=(32,)))
