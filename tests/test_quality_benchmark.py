"""benchmarks/quality.py end to end on a tiny random teacher: four real distillations (LCM and SCott at two training
seeds, 2 steps each), every row and metric in the JSON, the arms over seeds and the paired comparison, the grid's
size, and a second run that skips the finished variants and cached rows."""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

import pytest
from diffusers import UNet2DConditionModel
from PIL import Image

from benchmarks import quality, quality_variants
from scott.models import build_model, save_model

METRICS = ("fd_low", "fid", "prompt_accuracy", "precision", "recall", "density", "coverage")


@pytest.fixture(scope="module")
def teacher(tmp_path_factory) -> Path:
    """The tiny preset with its UNet's guidance embedding removed: a CFG teacher, as the recipe trains one."""
    bundle = build_model("tiny", seed=0)
    config = {**bundle.unet.config, "time_cond_proj_dim": None}
    unet = UNet2DConditionModel.from_config(config)
    state = {k: v for k, v in bundle.unet.state_dict().items() if not k.startswith("time_embedding.cond_proj")}
    unet.load_state_dict(state)
    return save_model(dataclasses.replace(bundle, unet=unet), tmp_path_factory.mktemp("teacher") / "tiny")


def _argv(teacher: Path, work: Path, *extra: str) -> list[str]:
    return [
        "--teacher", str(teacher), "--data", "procedural:8", "--work", str(work), "--methods", "lcm,scott",
        "--train-seeds", "0,1", "--no-ablation",
        "--budget-steps", "2", "--distill-option", "batch_size=4", "--distill-option", "checkpoint_every=0",
        "--threads", "1", "--prompts", "3", "--n-per-prompt", "2", "--eval-seeds", "2", "--eval-batch", "8",
        "--grid-prompts", "2", "--grid-scale", "2", "--grid", str(work / "grid.png"), "--no-progress", *extra,
    ]  # fmt: skip


def test_variants_are_methods_and_ablation_points_at_every_seed():
    base = {"eta": 0.3, "eta_reference": "sd15", "substeps": 3, "adv_weight": 0.4, "lr": 1e-4}
    ablation = {"eta": [0.3, 0.6], "h": [1, 3], "ref": ["none"]}
    variants = quality_variants.build_variants(base, ["lcm", "scott"], [0, 1], ablation)
    names = ["lcm", "scott", "scott-eta0.6", "scott-h1", "scott-refnone"]  # eta 0.3 and h 3 are SCott itself
    assert [v.name for v in variants] == [f"{n}-seed{s}" for s in (0, 1) for n in names]
    lcm = variants[0]
    assert lcm.overrides == {"eta": 0.0, "substeps": 1, "adv_weight": 0.0, "seed": 0} and lcm.group == "lcm"
    assert quality_variants.knob_values(base, variants[3]) == {"eta": 0.3, "h": 1, "adv": 0.4, "ref": "sd15"}
    assert variants[4].overrides["eta_reference"] == "none" and variants[-1].seed == 1
    with pytest.raises(ValueError, match="no method"):
        quality_variants.build_variants(base, ["vanilla"], [0], {})


@pytest.mark.slow  # four distillations: about two minutes on 2 cores
def test_benchmark_runs_then_resumes(teacher, tmp_path):
    work = tmp_path / "quality"
    report = quality.main(_argv(teacher, work, "--jobs", "2"))  # both distillations side by side, logs to files

    students = [f"{m}-seed{seed}" for m in ("lcm", "scott") for seed in (0, 1)]
    expected = {f"teacher@{s}" for s in (1, 2, 4, 25)} | {f"{m}@{s}" for m in students for s in (1, 2, 4)}
    rows = {r["row"]: r for r in report["rows"]}
    assert set(rows) == expected
    for row in rows.values():
        assert len(row["runs"]) == 2 and not row["cached"]
        for metric in METRICS:
            assert math.isfinite(row["mean"][metric]) and math.isfinite(row["std"][metric]), (row["row"], metric)
        assert row["mean"]["n_images"] == 6
    assert rows["lcm-seed0@1"]["knobs"] == {"eta": 0.0, "h": 1, "adv": 0.0, "ref": "sd15"}
    assert rows["scott-seed1@1"]["knobs"] == {"eta": 0.3, "h": 3, "adv": 0.4, "ref": "sd15"}
    # students are really distilled and different: LCM trained without a discriminator, SCott with one
    assert {v["status"] for v in report["variants"].values()} == {"trained"}
    for name in students:
        summary = json.loads((work / name / "train" / "rank-0.json").read_text())
        assert summary["steps"] == 2
        assert '"steps": 2' in (work / name / "distill.log").read_text()
    assert "loss_d" in (work / "scott-seed0" / "train" / "log.jsonl").read_text()
    seeds = {
        json.loads((work / n / "train" / "log.jsonl").read_text().splitlines()[0])["config"]["seed"] for n in students
    }
    assert seeds == {0, 1}
    # SCott against LCM, paired by seed (two pairs) and by prompt (three)
    assert set(report["comparisons"]) == {"scott@1", "scott@2", "scott@4"}
    one = report["comparisons"]["scott@1"]
    assert one["seeds"] == [0, 1] and one["prompts"]["n"] == 3
    lcm1 = [rows[f"lcm-seed{s}@1"]["mean"]["fd_low"] for s in (0, 1)]
    scott1 = [rows[f"scott-seed{s}@1"]["mean"]["fd_low"] for s in (0, 1)]
    assert one["fd_low"]["diff"] == pytest.approx(sum(scott1) / 2 - sum(lcm1) / 2)

    on_disk = json.loads((work / "quality.json").read_text())
    assert {r["row"] for r in on_disk["rows"]} == expected
    # 2 prompts x (teacher 25, LCM 1, SCott 1/2/4) cells of 64 px, upscaled 2x
    with Image.open(work / "grid.png") as grid:
        assert grid.size == (5 * 64 * 2, 2 * 64 * 2)
    listing = (work / "grid.txt").read_text()
    assert "teacher DDIM 25 | LCM 1 | SCott 1 | SCott 2 | SCott 4" in listing and listing.count("\n") == 5

    # Second run: nothing is retrained or re-evaluated.
    weights = work / "scott-seed0" / "model" / "unet" / "diffusion_pytorch_model.safetensors"
    before = weights.stat().st_mtime_ns
    again = quality.main(_argv(teacher, work, "--reference", f"copy={work / 'lcm-seed0' / 'model'}"))
    assert {v["status"] for v in again["variants"].values()} == {"skipped"}
    assert weights.stat().st_mtime_ns == before
    again_rows = {r["row"]: r for r in again["rows"]}
    assert all(again_rows[name]["cached"] for name in rows)
    assert {name: again_rows[name]["mean"]["fid"] for name in rows} == {k: r["mean"]["fid"] for k, r in rows.items()}
    # A --reference model is scored alike (the same student scores the same) and stays out of the arms.
    for steps in (1, 2, 4):
        copy = again_rows[f"copy@{steps}"]
        assert not copy["cached"] and "group" not in copy
        assert copy["mean"]["fd_low"] == rows[f"lcm-seed0@{steps}"]["mean"]["fd_low"]
    assert set(again["comparisons"]) == set(report["comparisons"])

    # --eval-only scores what is complete and trains nothing: the seed-2 students are left out.
    partial = quality.main(_argv(teacher, work, "--train-seeds", "0,1,2", "--eval-only", "--teacher-steps", ""))
    assert set(partial["variants"]) == set(students) and not (work / "lcm-seed2").exists()
    assert all(r["cached"] for r in partial["rows"])

    # A folder is never reused for another configuration of the same variant.
    with pytest.raises(quality_variants.FolderMismatch, match="another configuration"):
        quality.main(_argv(teacher, work, "--distill-option", "lr=0.001", "--teacher-steps", ""))
