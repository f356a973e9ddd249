"""A loss log (JSON lines) and a rich progress bar for the main process of a run."""

from __future__ import annotations

import json
import math
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn


class StepLog:
    """Appends one JSON object per logged step to `path`; shows a progress bar with the running loss."""

    def __init__(self, path: Path, enabled: bool = True, progress: bool = True) -> None:
        self.path, self.enabled, self.show = path, enabled, progress and enabled
        self._progress: Progress | None = None
        self._task: Any = None
        if enabled:
            path.parent.mkdir(parents=True, exist_ok=True)

    def _write(self, record: dict[str, Any]) -> None:
        if self.enabled:
            with self.path.open("a") as f:
                f.write(json.dumps(record) + "\n")

    def header(self, info: dict[str, Any]) -> None:
        self._write({"event": "start", "time": time.time(), **info})

    def step(self, step: int, metrics: dict[str, float]) -> None:
        clean = {k: (v if math.isfinite(v) else str(v)) for k, v in metrics.items()}
        self._write({"step": step, **clean})
        if self._progress is not None:
            self._progress.update(self._task, completed=step, loss=f"{metrics['loss']:.4g}")

    @contextmanager
    def bar(self, total: int, start: int = 0) -> Iterator[None]:
        if not self.show:
            yield
            return
        columns = (
            TextColumn("distill"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("loss {task.fields[loss]}"),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
        )
        with Progress(*columns, transient=False) as progress:
            self._progress = progress
            self._task = progress.add_task("distill", total=total, completed=start, loss="-")
            try:
                yield
            finally:
                self._progress = None
