"""The generation service: model lifecycle (load, warm up, drain), admission, deadlines, encoding.

Routes validate and call `run`; everything between a validated request and encoded PNGs happens here. A route
whose client has gone cancels `run` (server.cancellation), which drops the job from the queue.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Literal

from scott.images import NonFiniteImages
from scott.pipeline import ImageRequest, ModelInfo, TextToImagePipeline
from server.batcher import Batcher, DeadlineExceeded, Job, JobResult, QueueClosed, QueueFull
from server.errors import ApiError, without_paths
from server.images import b64, encode_pngs
from server.metrics import ServerMetrics
from server.params import ImageRequests
from server.settings import ServerSettings
from server.worker import InferenceWorker

log = logging.getLogger(__name__)

# loading -> ready -> draining (readiness fails, requests still served) -> stopping (new requests get 503).
State = Literal["loading", "ready", "failed", "draining", "stopping"]


# Cancel a run() with this message (task.cancel(DISCONNECTED)) when its client has gone: the drop counts as such.
DISCONNECTED = "disconnected"


@dataclass
class Generation:
    params: ImageRequests
    pngs: list[bytes]  # one per image, in order (image i has seed params.seeds[i])
    result: JobResult
    encode_s: float

    def b64_pngs(self) -> list[tuple[str, int]]:
        """Each image as (base64 PNG, seed), in order: what the JSON responses carry."""
        return [(b64(png), seed) for png, seed in zip(self.pngs, self.params.seeds, strict=True)]


class GenerationService:
    def __init__(
        self, settings: ServerSettings, metrics: ServerMetrics, pipeline: TextToImagePipeline | None = None
    ) -> None:
        self.settings, self.metrics, self.pipeline = settings, metrics, pipeline
        self.batcher = Batcher(
            settings.max_batch_size,
            settings.max_wait_ms / 1000.0,
            settings.max_queue,
            on_drop=lambda job, reason: metrics.drop(reason),
        )
        self.worker: InferenceWorker | None = None
        self.state: State = "loading"
        self.load_error: str | None = None
        self._started = time.monotonic()
        self.progress: tuple[str, float] | None = None  # (the step loading is in, when it began)
        self._state_lock = threading.Lock()  # the loader thread and shutdown race to change state
        self._inflight = 0  # requests inside run(); only touched on the event loop
        self._idle = asyncio.Event()  # set while _inflight is 0: what the shutdown drain waits for
        self._idle.set()
        self._encoder = ThreadPoolExecutor(settings.encode_threads, thread_name_prefix="scott-encode")
        metrics.track_queue_depth(lambda: self.batcher.depth)

    # -- lifecycle --------------------------------------------------------------------------------

    def start(self) -> None:
        """Load the model (unless given), run one generation to warm it up, start the worker. Blocking."""
        try:
            if self.pipeline is None:
                from engines.loader import load_pipeline

                s = self.settings
                self._progress(f"loading the model on {s.backend or 'the default backend'}")
                self.pipeline = load_pipeline(s.model_dir, s.load_options(), log=self._progress)
            if self.settings.warmup:
                # A backend that compiles or captures per shape does it for every batch size now, not on a live request.
                per_shape = self.pipeline.backend.per_shape
                batches = range(1, self.settings.max_batch_size + 1) if per_shape else range(1, 2)
                for batch in batches:
                    self._progress(f"warming up {self.pipeline.backend.name}: batch {batch} of {len(batches)}")
                    self.pipeline.generate([self._warmup_request(self.pipeline.info)] * batch)
        except Exception as exc:
            log.exception("model failed to load")
            with self._state_lock:
                self.load_error = without_paths(f"{type(exc).__name__}: {exc}")  # what clients see; the log has it all
                if self.state == "loading":
                    self.state = "failed"
            return
        with self._state_lock:
            if self.state != "loading":  # shut down while loading
                return
            self.worker = InferenceWorker(self.pipeline.generate, self.batcher, self.metrics.observe_batch)
            self.worker.start()
            backend = self.pipeline.backend
            self.metrics.backend.info(
                {
                    "backend": backend.name,
                    "device": str(backend.device),
                    "precision": backend.precision,
                    "decoder": self.pipeline.info.decoder,
                }
            )
            self.state = "ready"
            self.metrics.ready.set(1)
        log.info(
            "model %s ready: backend %s on %s, precision %s, %s decoder (%.1f s after start)",
            self.settings.served_model_name,
            backend.name,
            backend.device,
            backend.precision,
            self.pipeline.info.decoder,
            time.monotonic() - self._started,
        )

    def _progress(self, message: str) -> None:
        """The long step loading is in now: logged with the time since start, and what /readyz says while loading.

        /readyz shows file names, not paths (a probe's answer may travel further than the log)."""
        elapsed = time.monotonic() - self._started
        log.info("%s (%.1f s after start)", message.strip(), elapsed)
        self.progress = (without_paths(message.strip()), time.monotonic())

    @property
    def progress_text(self) -> str | None:
        """e.g. "exporting unet (8.8 MB of weights), 12 s" while loading; None once it is over."""
        if self.state != "loading" or self.progress is None:
            return None
        message, since = self.progress
        return f"{message}, {time.monotonic() - since:.0f} s"

    async def drain(self) -> None:
        """Graceful shutdown while the listener is still open (on SIGTERM, before the server stops accepting).

        Readiness fails at once, but requests are still served for drain_seconds: a load balancer keeps
        routing here until it has seen the failing probe. Then new requests get 503 and the ones already
        admitted run to completion (up to drain_timeout_s).
        """
        with self._state_lock:
            serving = self.state == "ready"
            if serving:
                self.state = "draining"
            elif self.state == "loading":
                self.state = "stopping"  # nothing admitted yet; never becomes ready
            self.metrics.ready.set(0)
        if serving and self.settings.drain_seconds > 0:
            log.info("draining: readiness fails, still serving for %.1fs", self.settings.drain_seconds)
            await asyncio.sleep(self.settings.drain_seconds)
        self._stop_admitting()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._idle.wait(), self.settings.drain_timeout_s)
        if self._inflight:
            log.warning("%d requests still running after %.1fs", self._inflight, self.settings.drain_timeout_s)

    def _stop_admitting(self) -> None:
        with self._state_lock:
            if self.state != "failed":
                self.state = "stopping"
            self.metrics.ready.set(0)
        self.batcher.close()  # the worker runs what is queued, without waiting for company, then exits

    def stop(self) -> None:
        """Refuse new requests, finish the queued ones (up to drain_timeout_s), stop the worker."""
        self._stop_admitting()
        if self.worker is not None and not self.worker.stop(self.settings.drain_timeout_s):
            log.warning("inference worker still busy after %.1fs; exiting anyway", self.settings.drain_timeout_s)
        self._encoder.shutdown(wait=True, cancel_futures=True)

    @staticmethod
    def _warmup_request(info: ModelInfo) -> ImageRequest:
        size = info.default_size
        return ImageRequest(
            "warm up", 0, info.default_steps, info.default_guidance_scale, info.default_gamma, size, size
        )

    # -- requests ---------------------------------------------------------------------------------

    def require_ready(self) -> ModelInfo:
        if self.state in ("ready", "draining") and self.pipeline is not None:
            return self.pipeline.info
        if self.state == "stopping":
            raise _shutting_down()
        detail = f": {self.load_error}" if self.load_error else "; retry shortly"
        raise ApiError(
            503, "not_ready", f"the model is {self.state}{detail}", headers={"Retry-After": "1"}, reason="not_ready"
        )

    async def run(self, params: ImageRequests, timeout_s: float | None = None) -> Generation:
        """Queue the images as one job, wait for them (bounded by the deadline), encode PNGs."""
        self._inflight += 1  # shutdown waits for this to reach 0 before the listener closes
        self._idle.clear()
        try:
            return await self._run(params, timeout_s)
        finally:
            self._inflight -= 1
            if not self._inflight:
                self._idle.set()

    async def _run(self, params: ImageRequests, timeout_s: float | None) -> Generation:
        limit = (
            self.settings.request_timeout_s if timeout_s is None else min(timeout_s, self.settings.request_timeout_s)
        )
        job = Job(params.expand(), deadline=time.monotonic() + limit)
        try:
            self.batcher.submit(job)
        except QueueFull as exc:
            headers = {"Retry-After": str(self._retry_after_s())}
            raise ApiError(
                429, "queue_full", f"server at capacity: {exc}", headers=headers, reason="queue_full"
            ) from exc
        except QueueClosed as exc:
            raise _shutting_down() from exc
        result = await self._wait(job, limit)
        self.metrics.queue_wait.observe(result.queue_s)
        start = time.perf_counter()
        pngs = await asyncio.get_running_loop().run_in_executor(self._encoder, encode_pngs, result.images)
        encode_s = time.perf_counter() - start
        self.metrics.encode.observe(encode_s)
        return Generation(params, pngs, result, encode_s)

    async def _wait(self, job: Job, limit: float) -> JobResult:
        result = asyncio.wrap_future(job.future)
        try:
            # asyncio.wait, not wait_for: the job is cancelled below, by the batcher, under the right reason.
            done, _ = await asyncio.wait({result}, timeout=limit)
        except asyncio.CancelledError as cancel:  # the route's client has gone, or the server cancelled it
            reason = DISCONNECTED if cancel.args == (DISCONNECTED,) else "cancelled"
            self.batcher.cancel(job, reason=reason)
            if reason == DISCONNECTED:
                self.metrics.reject(DISCONNECTED)
            raise
        if not done:
            self.batcher.cancel(job, reason="timeout")
            message = f"request deadline of {limit:.3f}s passed before the images were ready"
            raise ApiError(504, "timeout", message, reason="timeout")
        try:
            return result.result()
        except DeadlineExceeded as exc:
            message = f"request deadline of {limit:.3f}s passed in the queue"
            raise ApiError(504, "timeout", message, reason="timeout") from exc
        except NonFiniteImages as exc:
            self.metrics.nonfinite.inc()
            message = f"inference failed: {exc} (try --precision f32)"
            raise ApiError(500, "nonfinite_output", message, reason="failed") from exc
        except Exception as exc:  # the worker has logged it with its traceback
            message = f"inference failed: {type(exc).__name__}: {exc}"
            raise ApiError(500, "inference_failed", message, reason="failed") from exc

    def _retry_after_s(self) -> int:
        """Seconds until the queue has likely drained: batches ahead times the recent batch time."""
        per_batch = self.worker.batch_seconds if self.worker else 0.0
        batches = math.ceil(self.batcher.depth / self.settings.max_batch_size) + 1
        return int(min(60, max(1, math.ceil(batches * per_batch))))


def _shutting_down() -> ApiError:
    # Retry-After: another replica (or this one, restarted) can take the request at once.
    message = "the server is shutting down: it finishes the requests it has and takes no new ones; retry shortly"
    return ApiError(503, "shutting_down", message, headers={"Retry-After": "1"}, reason="shutting_down")
