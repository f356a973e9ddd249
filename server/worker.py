"""The inference worker: the one thread that owns the device, runs batches, and assembles each job's result."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from scott.pipeline import GenerationOutput, ImageRequest, StageTimings
from server.batcher import Batcher, Job, JobResult, Slot

log = logging.getLogger(__name__)

GenerateFn = Callable[[Sequence[ImageRequest]], GenerationOutput]
BatchHook = Callable[[int, StageTimings], None]  # (batch size, stage timings) after each batch


@dataclass
class _Assembly:
    """A job's images as they come out of batches (a job larger than a batch spans several)."""

    images: dict[int, np.ndarray] = field(default_factory=dict)  # index in the job -> image
    truncated: bool = False
    timings: StageTimings = field(default_factory=StageTimings)  # summed over its batches
    batch_sizes: list[int] = field(default_factory=list)

    def add_batch(self, timings: StageTimings, batch_size: int) -> None:
        self.timings.text += timings.text
        self.timings.unet += timings.unet
        self.timings.vae += timings.vae
        self.batch_sizes.append(batch_size)

    def result(self, job: Job) -> JobResult:
        images = [self.images[i] for i in range(job.size)]
        return JobResult(images, self.truncated, self.timings, self.batch_sizes, job.queue_s)


class InferenceWorker:
    """Takes batches from the batcher until it is closed and drained; a failed batch fails only its jobs."""

    def __init__(self, generate: GenerateFn, batcher: Batcher, on_batch: BatchHook | None = None) -> None:
        self._generate = generate
        self._batcher = batcher
        self._on_batch = on_batch
        self._thread: threading.Thread | None = None
        self._assemblies: dict[Job, _Assembly] = {}  # jobs with some images done; only the worker thread touches it
        self.batch_seconds = 0.0  # moving average of one batch's wall time, for Retry-After estimates

    def start(self) -> None:
        if self._thread is not None:
            raise RuntimeError("worker already started")
        self._thread = threading.Thread(target=self._loop, name="scott-inference", daemon=True)
        self._thread.start()

    def stop(self, timeout: float | None = None) -> bool:
        """Close the batcher, let the worker finish every queued job, and join it; False if it is still busy."""
        self._batcher.close()
        if self._thread is None:
            return True
        self._thread.join(timeout)
        return not self._thread.is_alive()

    def _loop(self) -> None:
        while (batch := self._batcher.next_batch()) is not None:
            self._run_batch(batch)

    def _run_batch(self, batch: Sequence[Slot]) -> None:
        jobs = list(dict.fromkeys(job for job, _ in batch))  # unique, in order
        start = time.perf_counter()
        try:
            output = self._generate([job.requests[index] for job, index in batch])
        except Exception as exc:
            log.exception("batch of %d images failed", len(batch))
            for job in jobs:
                self._assemblies.pop(job, None)
                job.set_outcome(exc)
                self._batcher.cancel(job, reason="failed")  # its other images, if queued, must not run
            return
        elapsed = time.perf_counter() - start
        self.batch_seconds = elapsed if self.batch_seconds == 0 else 0.8 * self.batch_seconds + 0.2 * elapsed
        if self._on_batch is not None:
            self._on_batch(len(batch), output.timings)
        flags = output.prompt_truncated or [False] * len(batch)
        for (job, index), image, truncated in zip(batch, output.images, flags, strict=True):
            assembly = self._assemblies.setdefault(job, _Assembly())
            assembly.images[index] = image
            assembly.truncated |= truncated
        for job in jobs:
            assembly = self._assemblies[job]
            assembly.add_batch(output.timings, len(batch))
            if len(assembly.images) == job.size:
                del self._assemblies[job]
                job.set_outcome(assembly.result(job))
        # A job cancelled between its batches never comes back: forget its partial images.
        for job in [job for job in self._assemblies if job.future.done()]:
            del self._assemblies[job]
