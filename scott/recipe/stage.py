"""A stage's folder in the run directory: its config and completion state, and where its log and checkpoints live.

Layout of <run>/<stage>/: state.json (the commit marker, written last and atomically), checkpoints/ (the training
kit's, scott.train.checkpoints), log.jsonl (one record per step), and whatever the stage produces (a model folder,
a latent file).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from scott.atomic import write_json_atomic


class StageDir:
    """One stage's folder: its config, whether it is complete, and its log."""

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

    @property
    def log_file(self) -> Path:
        return self.path / "log.jsonl"
