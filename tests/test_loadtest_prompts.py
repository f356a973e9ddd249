"""loadtests/prompts.txt is the procedural dataset's caption mix; this file makes it and fails when it drifts.

    .venv/bin/python tests/test_loadtest_prompts.py     # rewrite loadtests/prompts.txt (after a vocabulary change)

The load generator reads the text file and imports nothing from scott/ (loadtests talks HTTP only; importing
scott.data would also import torch), so the captions are made here, beside the test that keeps them in sync.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from scott.data import TRAIN_CAPTIONS, caption, combinations, parse_caption, sample

PROMPTS_FILE = Path(__file__).resolve().parents[1] / "loadtests" / "prompts.txt"
HELDOUT = 128  # complete captions of attribute combinations the model never trained on
PARTIAL = 128  # captions as in training: 60% complete, the rest name about half the attributes
SEED = 5  # fixed: the file is reproducible


def prompts() -> list[str]:
    """The load-test prompt mix: held-out complete captions, then validation-split captions with training's policy."""
    heldout = combinations("heldout")
    picks = np.random.default_rng(SEED).choice(len(heldout), size=min(HELDOUT, len(heldout)), replace=False)
    lines = [caption(heldout[int(i)]) for i in sorted(picks)]
    lines += [sample("val", index, TRAIN_CAPTIONS).caption for index in range(PARTIAL)]
    return lines


def test_prompt_file_is_the_generated_dataset_mix() -> None:
    lines = PROMPTS_FILE.read_text().splitlines()
    assert lines == prompts(), "loadtests/prompts.txt drifted from the data: run .venv/bin/python " + __file__
    assert len(set(lines)) > 200
    records = [parse_caption(line) for line in lines]  # every line is a caption of the procedural dataset
    assert sum(r.complete for r in records) > len(records) // 2
    assert any(not r.complete for r in records)  # partial captions too, as in training


def test_loadtests_import_nothing_of_the_product() -> None:
    """loadtests/ talks HTTP only: no module of it imports scott, server or engines."""
    for path in sorted((PROMPTS_FILE.parent).glob("*.py")):
        for line in path.read_text().splitlines():
            words = line.split()
            if words[:1] in (["import"], ["from"]) and len(words) > 1:
                assert words[1].split(".")[0] not in ("scott", "server", "engines"), f"{path.name}: {line.strip()}"


if __name__ == "__main__":
    lines = prompts()
    PROMPTS_FILE.write_text("\n".join(lines) + "\n")
    print(f"wrote {len(lines)} prompts to {PROMPTS_FILE}")
