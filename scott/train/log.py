"""A run's step log (JSON lines) and its rich progress bar with the measured seconds per step."""

from __future__ import annotations

import json
import math
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

console = Console(stderr=True)


def say(name: str, message: str) -> None:
    """One line of a run's narrative (`vae: resuming at step 100/2000`), on stderr."""
    console.print(f"{name}: {message}", markup=False, highlight=False)


class RunLog:
    """Appends one JSON object per logged step to `path`; shows a progress bar with the loss and the mean
    seconds per step (the first step, which pays for warm-up, excluded). Only the main process writes."""

    def __init__(self, path: Path, name: str, enabled: bool = True, progress: bool = True) -> None:
        self.path, self.name, self.enabled, self.show = Path(path), name, enabled, progress and enabled
        self.durations: list[float] = []
        self._progress: Progress | None = None
        self._task: Any = None
        if enabled:
            self.path.parent.mkdir(parents=True, exist_ok=True)

    def _write(self, record: dict[str, Any]) -> None:
        if self.enabled:
            with self.path.open("a") as f:
                f.write(json.dumps(record) + "\n")

    def header(self, info: dict[str, Any]) -> None:
        self._write({"event": "start", "time": time.time(), **info})

    def truncate(self, step: int) -> None:
        """Drop step records after `step`: the steps an interrupted run made after its last checkpoint."""
        if not (self.enabled and self.path.is_file()):
            return
        lines = [line for line in self.path.read_text().splitlines() if line]
        keep = [line for line in lines if json.loads(line).get("step", 0) <= step]
        self.path.write_text("".join(line + "\n" for line in keep))

    @property
    def seconds_per_step(self) -> float:
        """Mean wall time of the steps this process ran, the first excluded when there are more (nan if none)."""
        timed = self.durations[1:] or self.durations
        return sum(timed) / len(timed) if timed else float("nan")

    def step(self, step: int, metrics: dict[str, float], seconds: float, write: bool = True) -> None:
        """Record step `step` (counted from 1), which took `seconds`; write=False only times it and moves the bar."""
        self.durations.append(seconds)
        if write:
            clean = {k: (v if math.isfinite(v) else str(v)) for k, v in metrics.items()}
            self._write({"step": step, **clean, "seconds": seconds})
        if self._progress is not None:
            rate = f"{self.seconds_per_step:.2f}"
            self._progress.update(self._task, completed=step, rate=rate, loss=f"{metrics['loss']:.4g}")

    @contextmanager
    def bar(self, total: int, start: int = 0) -> Iterator[None]:
        if not self.show:
            yield
            return
        columns = (
            TextColumn(f"[bold]{self.name}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[rate]} s/step  loss {task.fields[loss]}"),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
        )
        with Progress(*columns, console=console, transient=False) as progress:
            self._progress = progress
            self._task = progress.add_task(self.name, total=total, completed=start, rate="-", loss="-")
            try:
                yield
            finally:
                self._progress = None
