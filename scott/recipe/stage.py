"""A stage's folder in the run directory: completion state, checkpoints (safetensors + JSON), a JSONL loss log.

Layout of <run>/<stage>/: state.json (the commit marker, written last and atomically), checkpoint-<step>.safetensors
(model, EMA and optimizer tensors of the latest checkpoint), log.jsonl (one record per step), and whatever the
stage produces (a model folder, a latent file).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from scott.atomic import write_json_atomic


class StageDir:
    """One stage's folder: is it complete, where did it stop, and its checkpoint and log."""

    def __init__(self, run_dir: Path, name: str, config: dict[str, Any]) -> None:
        # JSON round trip: the config is compared with the saved one, where tuples came back as lists.
        self.name, self.path, self.config = name, Path(run_dir) / name, json.loads(json.dumps(config))
        self.path.mkdir(parents=True, exist_ok=True)

    @property
    def state_file(self) -> Path:
        return self.path / "state.json"

    def state(self) -> dict[str, Any]:
        """The saved state, or {} for a fresh stage; a state written under another config is an error."""
        if not self.state_file.is_file():
            return {}
        state = json.loads(self.state_file.read_text())
        if state.get("config") != self.config:
            raise ValueError(
                f"{self.path} was run with another [{self.name}] config; use a new --out or delete that folder.\n"
                f"saved: {state.get('config')}\nnow:   {self.config}"
            )
        return state

    @property
    def complete(self) -> bool:
        return bool(self.state().get("complete", False))

    def update(self, **fields: Any) -> None:
        """Add fields to the saved state (atomically)."""
        write_json_atomic(self.state_file, {**self.state(), "config": self.config, **fields})

    def mark_complete(self, **results: Any) -> None:
        self.update(complete=True, **results)

    # -- checkpoints ----------------------------------------------------------------------------

    def save_checkpoint(self, step: int, tensors: dict[str, torch.Tensor], extra: dict[str, Any]) -> None:
        """Write the step's tensors, then point state.json at them (so a crash mid-write keeps the previous one)."""
        old = self.state().get("checkpoint")
        name = f"checkpoint-{step}.safetensors"
        save_file({k: v.detach().contiguous().cpu() for k, v in tensors.items()}, str(self.path / name))
        write_json_atomic(
            self.state_file, {"config": self.config, "complete": False, "step": step, "checkpoint": name, **extra}
        )
        if old and old != name:
            (self.path / old).unlink(missing_ok=True)

    def load_checkpoint(self) -> tuple[int, dict[str, torch.Tensor], dict[str, Any]] | None:
        state = self.state()
        if not state.get("checkpoint"):
            return None
        return int(state["step"]), load_file(str(self.path / state["checkpoint"])), state

    @property
    def log_file(self) -> Path:
        return self.path / "log.jsonl"
