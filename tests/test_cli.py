"""The `scott` command line: make-model writes a loadable folder, generate writes a PNG, serve parses flags."""

from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image
from typer.testing import CliRunner

from server.cli import app

runner = CliRunner()


@pytest.fixture(scope="module")
def made_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("cli") / "made"
    result = runner.invoke(app, ["make-model", "--preset", "tiny", "--out", str(out), "--seed", "3"])
    assert result.exit_code == 0, result.output
    assert "wrote tiny model (seed 3)" in result.output
    return out


def test_make_model_writes_a_diffusers_folder(made_model: Path) -> None:
    for part in ("model_index.json", "unet", "vae", "text_encoder", "tokenizer", "scheduler"):
        assert (made_model / part).exists(), part


def test_generate_writes_a_png_of_the_asked_size(made_model: Path, tmp_path: Path) -> None:
    out = tmp_path / "deep" / "x.png"
    args = ["generate", "a cat", "--model", str(made_model), "--steps", "2", "--seed", "9", "--size", "96x64"]
    result = runner.invoke(app, [*args, "--out", str(out), "--guidance", "4", "--gamma", "0.5"])
    assert result.exit_code == 0, result.output
    assert "seed 9" in result.output
    image = Image.open(out)
    assert image.format == "PNG" and image.size == (96, 64)


def test_generate_rejects_sizes_the_model_cannot_make(made_model: Path, tmp_path: Path) -> None:
    result = runner.invoke(app, ["generate", "x", "--model", str(made_model), "--size", "100x64"])
    assert result.exit_code == 2
    assert "multiple of 16" in result.output
    malformed = runner.invoke(app, ["generate", "x", "--model", str(made_model), "--size", "big"])
    assert malformed.exit_code == 2 and "WIDTHxHEIGHT" in malformed.output
    too_many_steps = runner.invoke(app, ["generate", "x", "--model", str(made_model), "--steps", "5"])
    assert too_many_steps.exit_code == 2


def test_make_model_rejects_unknown_presets(tmp_path: Path) -> None:
    result = runner.invoke(app, ["make-model", "--preset", "sdxl", "--out", str(tmp_path / "m")])
    assert result.exit_code == 2
    assert not (tmp_path / "m").exists()


def test_the_subcommands_are_listed() -> None:
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0
    for command in ("serve", "generate", "make-model"):
        assert command in result.output
    serve = runner.invoke(app, ["serve", "--help"])
    for flag in ("--model", "--backend", "--host", "--port", "--max-batch-size", "--max-wait-ms"):
        assert flag in serve.output
