"""The `scott` command line: make-model writes a loadable folder, generate writes a PNG, serve parses flags."""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import re
import shutil
from pathlib import Path

import pytest
import typer
from PIL import Image
from typer.testing import CliRunner

from scott.models import TINY_EXAMPLES
from server.cli import app
from server.flags import ENV_ONLY
from server.settings import ServerSettings

# In-process generations run on torch: this process never loads OpenVINO (the Makefile gives it its own).
ON_TORCH = ["--backend", "torch"]
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
    # the tiny preset's example prompts, and no sizes: random weights serve none better than another
    assert json.loads((made_model / "serving.json").read_text()) == {"examples": list(TINY_EXAMPLES)}


def test_generate_writes_a_png_of_the_asked_size(made_model: Path, tmp_path: Path) -> None:
    out = tmp_path / "deep" / "x.png"
    args = [
        "generate",
        "a cat",
        *ON_TORCH,
        "--model",
        str(made_model),
        "--steps",
        "2",
        "--seed",
        "9",
        "--size",
        "96x64",
    ]
    result = runner.invoke(app, [*args, "--out", str(out), "--guidance", "4", "--gamma", "0.5"])
    assert result.exit_code == 0, result.output
    assert "seed 9" in result.output
    image = Image.open(out)
    assert image.format == "PNG" and image.size == (96, 64)


def test_make_model_with_a_tiny_decoder_and_generate_with_it(tmp_path: Path) -> None:
    model = tmp_path / "with-tiny"
    made = runner.invoke(app, ["make-model", "--out", str(model), "--tiny-decoder"])
    assert made.exit_code == 0 and "tiny decoder" in made.output, made.output
    assert (model / "vae_tiny" / "config.json").is_file()
    out = tmp_path / "tiny.png"
    result = runner.invoke(app, ["generate", "a cat", *ON_TORCH, "--model", str(model), "--decoder", "tiny",
                                 "--out", str(out)])  # fmt: skip
    assert result.exit_code == 0 and "tiny decoder" in result.output, result.output
    assert Image.open(out).size == (64, 64)
    shutil.rmtree(model / "vae_tiny")
    missing = runner.invoke(app, ["generate", "x", *ON_TORCH, "--model", str(model), "--decoder", "tiny"])
    assert missing.exit_code != 0 and "has no vae_tiny/" in str(missing.exception)


def test_generate_rejects_sizes_the_model_cannot_make(made_model: Path, tmp_path: Path) -> None:
    result = runner.invoke(app, ["generate", "x", *ON_TORCH, "--model", str(made_model), "--size", "100x64"])
    assert result.exit_code == 2
    assert "multiple of 16" in result.output
    malformed = runner.invoke(app, ["generate", "x", *ON_TORCH, "--model", str(made_model), "--size", "big"])
    assert malformed.exit_code == 2 and "WIDTHxHEIGHT" in malformed.output
    too_many_steps = runner.invoke(app, ["generate", "x", *ON_TORCH, "--model", str(made_model), "--steps", "5"])
    assert too_many_steps.exit_code == 2


def test_every_command_reads_sizes_in_one_grammar(made_model: Path, tmp_path: Path) -> None:
    out = tmp_path / "square.png"
    square = runner.invoke(
        app, ["generate", "x", *ON_TORCH, "--model", str(made_model), "--size", "96", "--out", str(out)]
    )
    assert square.exit_code == 0, square.output
    assert Image.open(out).size == (96, 96)
    for command, flag in (
        (["generate", "x", *ON_TORCH], "--size"),
        (["build-engines", "--out", str(tmp_path / "e")], "--sizes"),
    ):
        for text in ("12x", "64X64"):  # the server's grammar exactly: no capital X, spaces or non-ASCII digits
            bad = runner.invoke(app, [*command, "--model", str(made_model), flag, text])
            assert bad.exit_code == 2, bad.output
            assert "WIDTHxHEIGHT or SIDE" in bad.output and f"'{text}'" in bad.output and flag in bad.output


def test_serve_has_a_flag_for_every_setting_with_its_description_as_help() -> None:
    serve = typer.main.get_command(app).commands["serve"]  # type: ignore[attr-defined]
    params = {param.name: param for param in serve.params}
    for name, field in ServerSettings.model_fields.items():
        if name in ENV_ONLY:  # secrets: an environment variable only, never a command line
            assert name not in params, f"ServerSettings.{name} must not be a flag"
            continue
        assert name in params, f"no flag for ServerSettings.{name}"
        assert field.description and params[name].help.startswith(field.description), name
        assert f"SCOTT_{name.upper()}" in params[name].help


def test_serve_flags_override_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    served: list[ServerSettings] = []
    monkeypatch.setattr("server.app.serve", served.append)
    monkeypatch.setenv("SCOTT_MAX_QUEUE", "32")
    monkeypatch.setenv("SCOTT_PORT", "9001")
    result = runner.invoke(app, ["serve", "--max-queue", "16", "--no-warmup", "--model", "/models/m"])
    assert result.exit_code == 0, result.output
    (settings,) = served
    assert (settings.max_queue, settings.port, settings.warmup) == (16, 9001, False)
    assert settings.model_dir == Path("/models/m")
    assert settings.max_batch_size == ServerSettings.model_fields["max_batch_size"].default  # neither: the default
    bad_flag = runner.invoke(app, ["serve", "--port", "70000"])
    assert bad_flag.exit_code == 2 and "--port" in bad_flag.output and "65535" in bad_flag.output
    monkeypatch.setenv("SCOTT_PORT", "many")
    bad_env = runner.invoke(app, ["serve"])
    assert bad_env.exit_code == 2 and "SCOTT_PORT" in bad_env.output
    assert len(served) == 1


def test_distill_has_a_flag_for_every_config_field() -> None:
    from scott.distill import DistillConfig

    result = runner.invoke(app, ["distill", "--help"])
    assert result.exit_code == 0, result.output
    for field in dataclasses.fields(DistillConfig):
        if field.name != "extras":  # free-form notes, not a knob
            assert "--" + field.name.replace("_", "-") in result.output, field.name
    missing = runner.invoke(app, ["distill", "--data", "procedural:8", "--steps", "1"])
    assert missing.exit_code == 2 and "teacher" in missing.output


def test_make_model_rejects_unknown_presets(tmp_path: Path) -> None:
    result = runner.invoke(app, ["make-model", "--preset", "sdxl", "--out", str(tmp_path / "m")])
    assert result.exit_code == 2
    assert not (tmp_path / "m").exists()


def test_the_subcommands_are_listed() -> None:
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0
    for command in ("serve", "generate", "make-model", "export", "build-engines", "distill", "eval"):
        assert command in result.output
    serve = runner.invoke(app, ["serve", "--help"])
    for flag in ("--model", "--backend", "--host", "--port", "--max-batch-size", "--max-wait-ms"):
        assert flag in serve.output


def test_export_writes_checked_onnx_graphs(made_model: Path, tmp_path: Path) -> None:
    result = runner.invoke(app, ["export", "--model", str(made_model), "--out", str(tmp_path / "onnx")])
    assert result.exit_code == 0, result.output
    for name in ("text_encoder", "unet", "vae_decoder"):
        assert (tmp_path / "onnx" / f"{name}.onnx").is_file()
        assert f"{name}: max abs error vs PyTorch" in result.output


@pytest.mark.skipif(importlib.util.find_spec("tensorrt") is not None, reason="TensorRT is installed here")
def test_build_engines_without_tensorrt_names_what_is_missing(made_model: Path, tmp_path: Path) -> None:
    result = runner.invoke(app, ["build-engines", "--model", str(made_model), "--out", str(tmp_path / "engines")])
    assert result.exit_code == 1
    assert "tensorrt" in result.output and "CUDA" in result.output
    assert not (tmp_path / "engines").exists() or not any((tmp_path / "engines").iterdir())


def test_distill_writes_a_servable_student(made_model: Path, tmp_path: Path) -> None:
    student = tmp_path / "student"
    args = ["distill", "--teacher", str(made_model), "--data", "procedural:8", "--out", str(student)]
    flags = ["--steps", "2", "--batch-size", "4", "--adv-weight", "0", "--lr", "1e-4", "--checkpoint-every", "0"]
    result = runner.invoke(app, [*args, *flags, "--work-dir", str(tmp_path / "work")])
    assert result.exit_code == 0, result.output
    assert "after 2 steps" in result.output
    out = tmp_path / "s.png"
    result = runner.invoke(
        app, ["generate", "a red circle", "--model", str(student), "--steps", "1", "--out", str(out)]
    )
    assert result.exit_code == 0, result.output
    assert Image.open(out).size == (64, 64)


def test_eval_prints_the_metrics_table(made_model: Path, tmp_path: Path) -> None:
    out = tmp_path / "metrics.json"
    # torch: this process never loads OpenVINO (the Makefile runs its tests apart; tests/test_openvino_backend.py
    # covers a batch past its compiled bound, as eval's batches of 24 are).
    args = ["eval", "--model", str(made_model), "--backend", "torch", "--steps", "1", "--n", "6", "--prompts", "4"]
    args += ["--json", str(out)]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "FD low floor" in result.output
    metrics = json.loads(out.read_text())["1"]
    assert 0.0 <= metrics["prompt_accuracy"] <= 1.0 and metrics["fd_low"] > metrics["real_fd_low"] > 0
    assert any(key.startswith("accuracy_color_on_") for key in metrics)


def test_export_writes_the_asked_precision_with_timed_steps(made_model: Path, tmp_path: Path) -> None:
    out = tmp_path / "onnx16"
    result = runner.invoke(app, ["export", "--model", str(made_model), "--out", str(out), "--precision", "f16"])
    assert result.exit_code == 0, result.output
    assert json.loads((out / "manifest.json").read_text())["precision"] == "f16"
    assert re.search(r"\d+\.\ds exporting unet", result.output)  # each step with the time since the start
    bad = runner.invoke(
        app, ["export", "--model", str(made_model), "--out", str(tmp_path / "x"), "--precision", "int8"]
    )
    assert bad.exit_code == 1 and "unknown precision 'int8'" in bad.output
    assert not (tmp_path / "x").exists()
