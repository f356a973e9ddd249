"""Stage 4: the student, by scott.distill's own trainer in this process (the config picks the method: CD, h = 3).

The recipe hands over the teacher folder, the data spec and the [distill] options (DistillConfig fields); the trainer
owns its checkpoints under the stage folder and resumes by itself.
"""

from __future__ import annotations

from pathlib import Path

from scott.distill.config import load_config
from scott.distill.trainer import distill
from scott.recipe.config import RecipeConfig
from scott.recipe.stage import StageDir
from scott.train.log import say

STAGE = "distill"


def student_dir(run_dir: Path) -> Path:
    return Path(run_dir) / STAGE / "model"


def run_distill_stage(run_dir: Path, cfg: RecipeConfig, teacher: Path) -> bool:
    dc = cfg.distill
    stage = StageDir(run_dir, STAGE, {"data": dc.data, "options": dc.options, "seed": cfg.seed})
    if stage.complete:
        say(STAGE, f"complete, skipping ({stage.path})")
        return True
    options = {"seed": cfg.seed, "cpu_threads": cfg.threads, **dc.options}
    out = student_dir(run_dir)
    say(STAGE, f"scott.distill: teacher {teacher}, data {dc.data}, out {out}, {options}")
    distill(load_config(None, teacher=teacher, data=dc.data, out=out, **options))
    stage.mark_complete(student=str(out))
    return True
