"""The step loop every trainer runs: time each step, log it, move the progress bar, checkpoint when due."""

from __future__ import annotations

import time
from collections.abc import Callable

from accelerate import Accelerator

from scott.train.checkpoints import Checkpoints
from scott.train.log import RunLog

# step (counted from 0) -> scalars to log; the function does the whole update (forward, backward, optimizer steps)
StepFn = Callable[[int], dict[str, float]]


def run_steps(
    step_fn: StepFn,
    *,
    start: int,
    end: int,
    total: int,
    log: RunLog,
    accelerator: Accelerator,
    checkpoints: Checkpoints | None,
    checkpoint_every: int,
    log_every: int = 1,
) -> dict[str, float]:
    """Run steps start .. end - 1 of a `total`-step run; returns the last step's scalars ({} if none ran).

    A checkpoint is written every `checkpoint_every` steps and after the last step run (so an interrupted or
    finished run can be resumed or extended); checkpoint_every = 0 or no checkpoints: none.
    """
    last: dict[str, float] = {}
    with log.bar(total=total, start=start):
        for step in range(start, end):
            began = time.perf_counter()
            last = step_fn(step)
            done = step + 1
            log.step(done, last, time.perf_counter() - began, write=done % log_every == 0 or done == total)
            if checkpoints is not None and checkpoint_every and (done % checkpoint_every == 0 or done == end):
                checkpoints.save(accelerator, done)
    return last
