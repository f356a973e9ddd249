"""benchmarks/fidelity.py: the paired test it reports, and a small run on the shipped model (torch only: the main
suite never loads OpenVINO)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from benchmarks import fidelity


def test_mcnemar_counts_only_the_images_that_changed() -> None:
    right = np.array([True] * 30 + [False] * 30)
    assert fidelity.mcnemar_p(right, right) == 1.0
    swapped = right.copy()
    swapped[:6], swapped[30:36] = False, True  # 6 lost, 6 gained: no net change
    assert fidelity.mcnemar_p(right, swapped) == 1.0
    gained = right.copy()
    gained[30:42] = True  # 12 gained, none lost
    assert fidelity.mcnemar_p(right, gained) < 0.001
    assert fidelity.mcnemar_p(gained, right) == fidelity.mcnemar_p(right, gained)


def test_a_variant_equal_to_the_reference_changes_nothing_and_the_tiny_decoder_changes_pixels(tmp_path: Path) -> None:
    out = tmp_path / "fidelity.json"
    argv = ["--prompts", "2", "--per-prompt", "2", "--steps", "1", "--json", str(out), "--grid-prompts", "2"]
    argv += ["--grid", str(tmp_path / "grid.png")]
    argv += ["--variant", "same=torch:f32:full", "--variant", "tiny=torch:f32:tiny"]
    assert fidelity.main(argv) == 0
    report = json.loads(out.read_text())
    rows = {row["variant"]: row for row in report["rows"]}
    assert rows["same"]["psnr_min"] > 128.0  # the same seeds through the same pipeline: bit-identical (128.1)
    assert all(rows["same"][a]["changed"] == 0 for a in ("prompt", "color", "size"))
    assert 20.0 < rows["tiny"]["psnr_min"] <= rows["tiny"]["psnr"] < 60.0
    assert report["variants"]["tiny"] == "torch:f32:tiny (TorchBackend, f32)"
    assert (tmp_path / "grid.png").exists() and (tmp_path / "grid.txt").exists()
