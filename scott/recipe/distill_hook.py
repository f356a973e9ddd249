"""Stage 4: the SCott student, by scott.distill's own trainer (`python -m scott.distill`), run as a subprocess.

The recipe only hands over the teacher folder, the data spec and the [distill] options (written to a JSON config
file the trainer reads); the trainer owns its checkpoints and resumes by itself.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

from scott.recipe.config import RecipeConfig
from scott.recipe.loop import say
from scott.recipe.stage import StageDir

STAGE = "distill"


def distiller_available() -> bool:
    try:
        return importlib.util.find_spec("scott.distill.__main__") is not None
    except ModuleNotFoundError:
        return False


def student_dir(run_dir: Path) -> Path:
    return Path(run_dir) / STAGE / "model"


def run_distill_stage(run_dir: Path, cfg: RecipeConfig, teacher: Path) -> bool:
    if not distiller_available():
        raise NotImplementedError("scott.distill not available yet")
    dc = cfg.distill
    stage = StageDir(run_dir, STAGE, {"data": dc.data, "options": dc.options, "seed": cfg.seed})
    if stage.complete:
        say(STAGE, f"complete, skipping ({stage.path})")
        return True
    options = {"seed": cfg.seed, "cpu_threads": cfg.threads, **dc.options}
    config_file = stage.path / "distill-config.json"
    config_file.write_text(json.dumps(options, indent=2) + "\n")
    out = student_dir(run_dir)
    command = [
        sys.executable, "-m", "scott.distill",
        "--teacher", str(teacher), "--data", dc.data, "--out", str(out), "--config", str(config_file),
    ]  # fmt: skip
    say(STAGE, " ".join(command))
    subprocess.run(command, check=True)
    if not (out / "model_index.json").is_file():
        raise RuntimeError(f"scott.distill finished but wrote no model folder at {out}")
    stage.mark_complete(student=str(out))
    return True
