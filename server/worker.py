"""The inference worker: the one thread that owns the device and calls pipeline.generate on batches."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence

from scott.pipeline import GenerationOutput, ImageRequest, StageTimings
from server.batcher import Batcher, Slot

log = logging.getLogger(__name__)

GenerateFn = Callable[[Sequence[ImageRequest]], GenerationOutput]
BatchHook = Callable[[int, StageTimings], None]  # (batch size, stage timings) after each batch


class InferenceWorker:
    """Takes batches from the batcher until it is closed and drained; a failed batch fails only its jobs."""

    def __init__(self, generate: GenerateFn, batcher: Batcher, on_batch: BatchHook | None = None) -> None:
        self._generate = generate
        self._batcher = batcher
        self._on_batch = on_batch
        self._thread: threading.Thread | None = None
        self.batch_seconds = 0.0  # moving average of one batch's wall time, for Retry-After estimates

    @property
    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

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
            if batch:
                self.run_batch(batch)

    def run_batch(self, batch: Sequence[Slot]) -> None:
        jobs = list(dict.fromkeys(job for job, _ in batch))  # unique, in order
        start = time.perf_counter()
        try:
            output = self._generate([job.requests[index] for job, index in batch])
        except Exception as exc:
            log.exception("batch of %d images failed", len(batch))
            for job in jobs:
                job.set_outcome(exc)
                self._batcher.cancel(job, reason="failed")  # its other images, if queued, must not run
            return
        elapsed = time.perf_counter() - start
        self.batch_seconds = elapsed if self.batch_seconds == 0 else 0.8 * self.batch_seconds + 0.2 * elapsed
        if self._on_batch is not None:
            self._on_batch(len(batch), output.timings)
        flags = output.prompt_truncated or [False] * len(batch)
        for (job, index), image, truncated in zip(batch, output.images, flags, strict=True):
            job.record(index, image, truncated)
        for job in jobs:
            job.add_batch(output.timings, len(batch))
            job.finish_if_complete()
