"""Checkpoints of a training run: accelerate's state (models, optimizers, schedulers, grad scaler and registered
objects such as an EMA) in <folder>/step-NNNNNNN/, committed by a done marker written last."""

from __future__ import annotations

import shutil
from pathlib import Path

from accelerate import Accelerator

from scott.atomic import write_json_atomic

DONE = "done.json"


class Checkpoints:
    """The checkpoints under one folder; keep: how many complete ones to keep (None: all)."""

    def __init__(self, folder: Path, keep: int | None = None) -> None:
        self.folder, self.keep = Path(folder), keep

    def complete(self) -> list[tuple[int, Path]]:
        """(step, folder) of every checkpoint whose done marker was written, oldest first."""
        found = [(int(p.name.split("-", 1)[1]), p) for p in self.folder.glob("step-*") if (p / DONE).is_file()]
        return sorted(found)

    def save(self, accelerator: Accelerator, step: int) -> Path:
        """Every rank saves its part; the main process then marks it done and drops the oldest beyond `keep`."""
        path = self.folder / f"step-{step:07d}"
        accelerator.save_state(str(path))
        accelerator.wait_for_everyone()
        if accelerator.is_main_process:
            write_json_atomic(path / DONE, {"step": step})
            if self.keep is not None:
                for _, old in self.complete()[: -self.keep]:
                    shutil.rmtree(old, ignore_errors=True)
        accelerator.wait_for_everyone()
        return path

    def resume(self, accelerator: Accelerator) -> int:
        """Load the newest complete checkpoint into the prepared and registered objects; its step (0 if none)."""
        found = self.complete()
        if not found:
            return 0
        step, path = found[-1]
        accelerator.load_state(str(path))
        return step
