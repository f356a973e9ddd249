"""Write loadtests/prompts.txt from the procedural dataset's captions (run again if the vocabulary changes).

    .venv/bin/python -m loadtests.make_prompts

The locustfile reads the text file, not scott.data, so a load generator needs Locust and nothing else
(importing scott.data would import torch). tests/test_loadtest_prompts.py keeps the file in sync.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from scott.data import TRAIN_CAPTIONS, caption, combinations, sample

PROMPTS_FILE = Path(__file__).with_name("prompts.txt")
HELDOUT = 128  # complete captions of attribute combinations the model never trained on
PARTIAL = 128  # captions as in training: 60% complete, the rest name about half the attributes
_SEED = 5  # fixed: the file is reproducible


def prompts() -> list[str]:
    """The load-test prompt mix: held-out complete captions, then validation-split captions with training's policy."""
    heldout = combinations("heldout")
    picks = np.random.default_rng(_SEED).choice(len(heldout), size=min(HELDOUT, len(heldout)), replace=False)
    lines = [caption(heldout[int(i)]) for i in sorted(picks)]
    lines += [sample("val", index, TRAIN_CAPTIONS).caption for index in range(PARTIAL)]
    return lines


def main() -> None:
    lines = prompts()
    PROMPTS_FILE.write_text("\n".join(lines) + "\n")
    print(f"wrote {len(lines)} prompts to {PROMPTS_FILE}")


if __name__ == "__main__":
    main()
