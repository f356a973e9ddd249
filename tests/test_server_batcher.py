"""The batch loop without HTTP or a model: admission, batching by key, waiting, cancellation, draining."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence

import numpy as np
import pytest

from scott.pipeline import GenerationOutput, ImageRequest, StageTimings
from server.batcher import Batcher, DeadlineExceeded, Job, QueueClosed, QueueFull
from server.worker import InferenceWorker
from tests.support.waiting import wait_until


def job(
    n: int = 1,
    seed: int = 0,
    steps: int = 4,
    size: int = 64,
    prompt: str = "p",
    timeout: float = 60.0,
    clock: Callable[[], float] = time.monotonic,
) -> Job:
    requests = [ImageRequest(prompt, seed + i, steps, 8.0, 0.3, size, size) for i in range(n)]
    now = clock()
    return Job(requests, deadline=now + timeout, arrived=now)


class FakeClock:
    """A batcher's clock that moves only when the test says so."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def fake_generate(requests: Sequence[ImageRequest]) -> GenerationOutput:
    """Each image is filled with its seed, so tests can see which request produced it."""
    if len({r.batch_key for r in requests}) != 1:
        raise AssertionError("a batch mixed batch keys")
    images = np.stack([np.full((2, 2, 3), r.seed % 256, dtype=np.uint8) for r in requests])
    if any(r.prompt == "boom" for r in requests):
        raise RuntimeError("boom")
    return GenerationOutput(images, StageTimings(0.001, 0.002, 0.003), [r.prompt == "long" for r in requests])


def test_batches_fill_to_max_batch_size_in_arrival_order() -> None:
    batcher = Batcher(max_batch_size=8, max_wait_s=0.0, max_queue=64)
    jobs = [job(seed=i) for i in range(10)]
    for j in jobs:
        batcher.submit(j)
    assert batcher.depth == 10
    first, second = batcher.next_batch(), batcher.next_batch()
    assert [j for j, _ in first] == jobs[:8]
    assert [j for j, _ in second] == jobs[8:]
    assert batcher.depth == 0
    batcher.close()
    assert batcher.next_batch() is None  # nothing was left behind in the queue


def test_a_lone_job_on_an_idle_batcher_runs_at_once() -> None:
    batcher = Batcher(max_batch_size=8, max_wait_s=10.0, max_queue=64)
    lone = job()
    batcher.submit(lone)
    start = time.monotonic()
    assert batcher.next_batch() == [(lone, 0)]
    assert time.monotonic() - start < 1.0  # not the 10 s max_wait


def with_company(batcher: Batcher) -> None:
    """Run one batch of two requests: the sign of concurrency that makes the batcher wait again."""
    batcher.submit(job(seed=100))
    batcher.submit(job(seed=101))
    assert len(batcher.next_batch()) == 2


def test_after_a_batch_with_company_a_lone_job_waits_max_wait_then_runs_alone() -> None:
    batcher = Batcher(max_batch_size=8, max_wait_s=0.15, max_queue=64)
    with_company(batcher)
    lone = job()
    batcher.submit(lone)
    start = time.monotonic()
    batch = batcher.next_batch()
    waited = time.monotonic() - start
    assert batch == [(lone, 0)]
    assert 0.1 <= waited < 1.0
    # That batch had one request: the next lone job no longer waits.
    again = job(seed=1)
    batcher.submit(again)
    start = time.monotonic()
    assert batcher.next_batch() == [(again, 0)]
    assert time.monotonic() - start < 0.1


def test_one_request_of_many_images_is_not_company() -> None:
    batcher = Batcher(max_batch_size=8, max_wait_s=10.0, max_queue=64)
    for seed in (0, 10):
        batcher.submit(job(n=4, seed=seed))
        start = time.monotonic()
        assert len(batcher.next_batch()) == 4
        assert time.monotonic() - start < 1.0


def test_a_full_batch_does_not_wait() -> None:
    batcher = Batcher(max_batch_size=4, max_wait_s=10.0, max_queue=64)
    for i in range(4):
        batcher.submit(job(seed=i))
    start = time.monotonic()
    assert len(batcher.next_batch()) == 4
    assert time.monotonic() - start < 1.0


def test_late_arrivals_join_the_waiting_batch() -> None:
    batcher = Batcher(max_batch_size=8, max_wait_s=0.3, max_queue=64)
    with_company(batcher)
    first = job(seed=0)
    batcher.submit(first)
    late = job(seed=1)
    threading.Timer(0.05, batcher.submit, args=(late,)).start()
    assert [j for j, _ in batcher.next_batch()] == [first, late]


def test_keys_never_mix_and_the_oldest_key_goes_first() -> None:
    batcher = Batcher(max_batch_size=8, max_wait_s=0.0, max_queue=64)
    a1, b1, a2 = job(steps=4), job(steps=2), job(steps=4)
    for j in (a1, b1, a2):
        batcher.submit(j)
    assert [j for j, _ in batcher.next_batch()] == [a1, a2]
    assert [j for j, _ in batcher.next_batch()] == [b1]


def test_a_job_larger_than_a_batch_spans_batches() -> None:
    batcher = Batcher(max_batch_size=3, max_wait_s=0.0, max_queue=64)
    big = job(n=8)
    batcher.submit(big)
    sizes = []
    while batcher.depth:
        batch = batcher.next_batch()
        assert all(j is big for j, _ in batch)
        sizes.append([index for _, index in batch])
    assert sizes == [[0, 1, 2], [3, 4, 5], [6, 7]]


def test_admission_is_bounded_in_images() -> None:
    batcher = Batcher(max_batch_size=8, max_wait_s=0.0, max_queue=8)
    batcher.submit(job(n=5))
    with pytest.raises(QueueFull, match="5 of 8"):
        batcher.submit(job(n=4))
    batcher.submit(job(n=3))
    assert batcher.depth == 8
    batcher.next_batch()
    batcher.submit(job(n=8))  # taking a batch frees the queue


def test_cancelled_jobs_are_dropped_before_batching() -> None:
    dropped: list[tuple[Job, str]] = []
    batcher = Batcher(max_batch_size=8, max_wait_s=0.0, max_queue=64, on_drop=lambda j, r: dropped.append((j, r)))
    keep, gone, also_gone = job(seed=1), job(n=3, seed=2), job(seed=3)
    for j in (keep, gone, also_gone):
        batcher.submit(j)
    assert batcher.cancel(gone, reason="disconnected")
    also_gone.future.cancel()  # cancelled behind the batcher's back: still skipped
    assert batcher.depth == 2  # the explicitly cancelled job's images leave the queue at once
    assert batcher.next_batch() == [(keep, 0)]
    assert dropped == [(gone, "disconnected"), (also_gone, "cancelled")]
    assert gone.future.cancelled()
    assert not batcher.cancel(keep)  # already taken: nothing left to drop


def test_expired_jobs_are_dropped_with_deadline_exceeded() -> None:
    clock = FakeClock()
    dropped: list[str] = []
    batcher = Batcher(
        max_batch_size=8, max_wait_s=0.0, max_queue=64, on_drop=lambda j, r: dropped.append(r), clock=clock
    )
    stale, fresh = job(timeout=0.01, clock=clock), job(timeout=60, clock=clock)
    batcher.submit(stale)
    batcher.submit(fresh)
    clock.advance(0.03)  # past the stale job's deadline, long before the fresh one's
    assert batcher.next_batch() == [(fresh, 0)]
    assert dropped == ["expired"]
    with pytest.raises(DeadlineExceeded, match=r"after 0\.030s in the queue"):
        stale.future.result(timeout=0)
    assert fresh.queue_s == pytest.approx(0.03)  # taken at the clock's time


def test_close_drains_without_waiting_then_ends() -> None:
    batcher = Batcher(max_batch_size=2, max_wait_s=10.0, max_queue=64)
    for i in range(3):
        batcher.submit(job(seed=i))
    batcher.close()
    with pytest.raises(QueueClosed):
        batcher.submit(job())
    start = time.monotonic()
    assert [len(batcher.next_batch()), len(batcher.next_batch())] == [2, 1]
    assert batcher.next_batch() is None
    assert time.monotonic() - start < 1.0


def test_worker_delivers_each_image_to_its_job_in_order() -> None:
    batcher = Batcher(max_batch_size=3, max_wait_s=0.05, max_queue=64)
    batches: list[int] = []
    worker = InferenceWorker(fake_generate, batcher, on_batch=lambda size, timings: batches.append(size))
    worker.start()
    jobs = [job(n=2, seed=10), job(n=4, seed=20, prompt="long"), job(n=1, seed=30)]
    for j in jobs:
        batcher.submit(j)
    results = [j.future.result(timeout=5) for j in jobs]
    assert worker.stop(timeout=5)
    assert sum(batches) == 7 and max(batches) <= 3
    for j, result in zip(jobs, results, strict=True):
        seeds = [r.seed for r in j.requests]
        assert [int(image[0, 0, 0]) for image in result.images] == seeds
        assert result.prompt_truncated == (j.requests[0].prompt == "long")
        assert sum(result.batch_sizes) >= j.size
        assert result.timings.unet == pytest.approx(0.002 * len(result.batch_sizes))


def test_a_failed_batch_fails_its_jobs_and_the_worker_goes_on() -> None:
    batcher = Batcher(max_batch_size=8, max_wait_s=0.0, max_queue=64)
    worker = InferenceWorker(fake_generate, batcher)
    worker.start()
    bad = job(prompt="boom")
    batcher.submit(bad)
    with pytest.raises(RuntimeError, match="boom"):
        bad.future.result(timeout=5)
    good = job(seed=7)
    batcher.submit(good)
    assert int(good.future.result(timeout=5).images[0][0, 0, 0]) == 7
    assert worker.stop(timeout=5)


def test_idle_means_the_worker_waits_with_nothing_queued_and_every_batch_run() -> None:
    batcher = Batcher(max_batch_size=2, max_wait_s=0.0, max_queue=64)
    assert not batcher.idle  # no worker waits yet
    sizes: list[int] = []
    worker = InferenceWorker(fake_generate, batcher, on_batch=lambda size, timings: sizes.append(size))
    worker.start()
    wait_until(lambda: batcher.idle, 5, "the worker waiting on an empty queue")
    jobs = [job(seed=i) for i in range(3)]
    for j in jobs:
        batcher.submit(j)
    wait_until(lambda: batcher.idle, 5, "the worker idle again")
    assert all(j.future.done() for j in jobs) and sum(sizes) == 3
    assert worker.stop(timeout=5)


def test_stop_finishes_queued_jobs_before_the_worker_exits() -> None:
    batcher = Batcher(max_batch_size=2, max_wait_s=10.0, max_queue=64)
    jobs = [job(seed=i) for i in range(5)]
    for j in jobs:
        batcher.submit(j)
    worker = InferenceWorker(fake_generate, batcher)
    worker.start()
    assert worker.stop(timeout=5)  # True: the thread has exited
    assert all(j.future.done() and not j.future.cancelled() for j in jobs)
