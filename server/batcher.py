"""The queue between routes and the inference worker: bounded admission, batching by key, dropping the dead.

The one owner of queue state (text-generation-inference style): routes submit and cancel Jobs, the
worker takes batches. A batch holds images of one batch_key, up to max_batch_size, collected for at
most max_wait_s after its oldest job arrived. A job may span several batches when it does not fit.

Waiting for company pays only under concurrency, so it is adaptive: after a batch of one request the
next batch starts as soon as a job is queued (a lone client never pays max_wait_s); after a batch of
several requests, the batcher waits up to max_wait_s again (closed-loop clients that just got their images
come back within a few ms, and waiting gathers them into one batch instead of a 1 + N-1 split).
Cancelled and expired jobs are dropped before they reach a batch, so they never cost compute.

The batcher reads the time only from its clock (time.monotonic unless a test passes another); the deadlines and
arrival times of its jobs are on that clock.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Hashable, Sequence
from concurrent.futures import Future, InvalidStateError
from dataclasses import dataclass, field

import numpy as np

from scott.pipeline import ImageRequest, StageTimings


class QueueFull(Exception):
    """Admission refused: the queue holds max_queue images."""


class QueueClosed(Exception):
    """The batcher is draining for shutdown and takes no new jobs."""


class DeadlineExceeded(Exception):
    """The job's deadline passed while it waited."""


@dataclass
class JobResult:
    images: list[np.ndarray]  # (H, W, 3) uint8, one per request of the job, in order
    prompt_truncated: bool
    timings: StageTimings  # summed over the batches the job ran in
    batch_sizes: list[int]
    queue_s: float  # arrival -> first image entering a batch


@dataclass(eq=False)
class Job:
    """One HTTP request: images that share a batch_key, a deadline, and a future for the result.

    The queue's view of it; the inference worker assembles its images into the JobResult.
    """

    requests: Sequence[ImageRequest]
    deadline: float  # seconds on the batcher's clock (time.monotonic())
    arrived: float = field(default_factory=time.monotonic)  # on the same clock
    future: Future[JobResult] = field(default_factory=Future)
    started: float | None = None  # when its first image was taken into a batch
    taken: int = 0  # images handed to the worker so far

    def __post_init__(self) -> None:
        if not self.requests:
            raise ValueError("a job needs at least one image request")
        if len({r.batch_key for r in self.requests}) != 1:
            raise ValueError("all images of a job must share a batch_key")

    @property
    def key(self) -> Hashable:
        return self.requests[0].batch_key

    @property
    def size(self) -> int:
        return len(self.requests)

    @property
    def remaining(self) -> int:
        return self.size - self.taken

    @property
    def cancelled(self) -> bool:
        return self.future.cancelled()

    @property
    def queue_s(self) -> float:
        """Arrival -> its first image entering a batch."""
        return (self.started or self.arrived) - self.arrived

    def set_outcome(self, outcome: JobResult | BaseException) -> None:
        """Complete the future unless it is already done (cancelled by its route, say)."""
        if self.future.done():
            return
        try:
            if isinstance(outcome, BaseException):
                self.future.set_exception(outcome)
            else:
                self.future.set_result(outcome)
        except InvalidStateError:  # cancelled between the check and the set
            pass


Slot = tuple[Job, int]  # one image: (its job, its index in the job)
DropHook = Callable[[Job, str], None]


class Batcher:
    """Thread-safe: routes call submit/cancel from the event loop, one worker thread calls next_batch."""

    def __init__(
        self,
        max_batch_size: int,
        max_wait_s: float,
        max_queue: int,
        on_drop: DropHook | None = None,
        clock: Callable[[], float] = time.monotonic,
    ):
        if max_batch_size < 1 or max_queue < 1 or max_wait_s < 0:
            raise ValueError("need max_batch_size >= 1, max_queue >= 1, max_wait_s >= 0")
        self.max_batch_size, self.max_wait_s, self.max_queue = max_batch_size, max_wait_s, max_queue
        self._on_drop = on_drop
        self._clock = clock  # a wait for company blocks (due - now) real seconds at most, then reads it again
        self._jobs: deque[Job] = deque()
        self._queued = 0  # images in self._jobs not yet taken
        self._closed = False
        self._last_batch_jobs = 0  # requests in the last batch; 0 or 1: no sign of concurrency, so no waiting
        self._waiting_idle = False  # next_batch is blocked with nothing queued
        self._cond = threading.Condition()

    @property
    def depth(self) -> int:
        """Images admitted and waiting for a batch."""
        return self._queued

    @property
    def idle(self) -> bool:
        """The worker waits in next_batch with nothing queued: every batch it took has run."""
        with self._cond:
            return self._waiting_idle and not self._jobs

    def submit(self, job: Job) -> None:
        with self._cond:
            if self._closed:
                raise QueueClosed("the server is shutting down")
            if self._queued + job.size > self.max_queue:
                raise QueueFull(f"queue holds {self._queued} of {self.max_queue} images; this request needs {job.size}")
            self._jobs.append(job)
            self._queued += job.size
            self._cond.notify_all()

    def cancel(self, job: Job, reason: str = "cancelled") -> bool:
        """Drop a job that has not fully entered a batch; True if any of its images were still queued."""
        job.future.cancel()
        with self._cond:
            if job not in self._jobs:
                return False
            self._remove(job, reason)
            self._cond.notify_all()
            return True

    def close(self) -> None:
        """Refuse new jobs; next_batch hands out what is queued without waiting, then returns None."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    def next_batch(self) -> list[Slot] | None:
        """Block until a batch is due and return it (never empty); None once closed and empty."""
        with self._cond:
            while True:
                self._drop_dead()
                now = self._clock()
                wait: float | None = None
                if self._jobs:
                    head = self._jobs[0]
                    due = head.arrived + (self.max_wait_s if self._last_batch_jobs > 1 else 0.0)
                    if self._closed or now >= due or self._available(head.key) >= self.max_batch_size:
                        return self._take(head.key, now)
                    wait = due - now
                elif self._closed:
                    return None
                self._waiting_idle = not self._jobs
                self._cond.wait(wait)
                self._waiting_idle = False

    # -- internals (caller holds the lock) -------------------------------------------------------

    def _available(self, key: Hashable) -> int:
        return sum(job.remaining for job in self._jobs if job.key == key)

    def _take(self, key: Hashable, now: float) -> list[Slot]:
        batch: list[Slot] = []
        for job in list(self._jobs):
            if job.key != key:
                continue
            count = min(job.remaining, self.max_batch_size - len(batch))
            batch.extend((job, job.taken + i) for i in range(count))
            job.taken += count
            if job.started is None:
                job.started = now
            self._queued -= count
            if job.remaining == 0:
                self._jobs.remove(job)
            if len(batch) == self.max_batch_size:
                break
        self._last_batch_jobs = len({id(job) for job, _ in batch})
        return batch

    def _remove(self, job: Job, reason: str) -> None:
        self._jobs.remove(job)
        self._queued -= job.remaining
        if self._on_drop is not None:
            self._on_drop(job, reason)

    def _drop_dead(self) -> None:
        now = self._clock()
        for job in list(self._jobs):
            if job.cancelled:
                self._remove(job, "cancelled")
            elif now >= job.deadline:
                self._remove(job, "expired")
                job.set_outcome(DeadlineExceeded(f"deadline passed after {now - job.arrived:.3f}s in the queue"))
