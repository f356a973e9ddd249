"""Serving benchmark: raw pipeline latency vs HTTP end-to-end latency, and throughput with batching on/off.

    .venv/bin/python -m benchmarks.serving [--model DIR] [--requests 64]

All numbers come from one run on one model (default: the shipped one, models/scott-tiny) and the default backend
of the device (openvino on the CPU; --backend to pick another). The server runs as a real `scott serve`
subprocess (its own interpreter, as in production); the clients are async httpx in this process. Targets: at
concurrency 1, a 1-step image over HTTP within 1.25x + 3 ms of the bare runtime doing the same work in this
process (text + UNet + VAE + PNG encode); batching on >= 1.5x the images/s of batching off at concurrency 8.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import statistics
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
from rich.console import Console
from rich.table import Table

from loadtests.server_process import ServerProcess, batch_totals, free_port

ROOT = Path(__file__).resolve().parents[1]
console = Console()


# -- raw pipeline ---------------------------------------------------------------------------------


class RawPipeline:
    """The same model in this process, for the pipeline-only baseline."""

    def __init__(self, model: Path, backend: str | None) -> None:
        from engines.load_options import LoadOptions
        from engines.loader import load_pipeline

        self.pipeline = load_pipeline(model, LoadOptions(backend, "cpu"))

    def latency(self, steps: int, seed: int) -> float:
        """One image, prompt to PNG bytes: what the server does for a request, less HTTP and queueing."""
        from scott.pipeline import ImageRequest
        from server.images import encode_png

        info = self.pipeline.info
        size = info.default_size
        request = ImageRequest("a lighthouse", seed, steps, info.default_guidance_scale, info.default_gamma, size, size)
        start = time.perf_counter()
        encode_png(self.pipeline.generate([request]).images[0])
        return time.perf_counter() - start


# -- server subprocess ----------------------------------------------------------------------------


@contextlib.contextmanager
def serve(model: Path, backend: str | None, max_batch_size: int, max_wait_ms: float) -> Iterator[str]:
    """`scott serve` in a subprocess; yields its URL once /readyz says ready; SIGTERM on exit."""
    port = free_port()
    command = [sys.executable, "-m", "server.cli", "serve", "--model", str(model), "--device", "cpu"]
    command += ["--backend", backend] if backend else []
    command += ["--port", str(port), "--max-batch-size", str(max_batch_size), "--max-wait-ms", str(max_wait_ms)]
    command += ["--max-queue", "256", "--request-timeout-s", "600", "--log-level", "warning"]
    url = f"http://127.0.0.1:{port}"
    with ServerProcess(command, url, ready_timeout_s=180, cwd=ROOT, env={"PYTHONPATH": str(ROOT)}):
        yield url


def batch_stats(url: str) -> tuple[float, float]:
    totals = batch_totals(url)
    if totals is None:
        raise RuntimeError(f"{url}/metrics has no scott_batch_size")
    return totals


# -- clients --------------------------------------------------------------------------------------


@dataclass
class LatencyPoint:
    pipeline_ms: float  # in this process, interleaved with the HTTP requests so both see the same load
    e2e_ms: float
    server_pipeline_ms: float  # text + unet + vae of the same HTTP request (its Server-Timing header)
    overhead_ms: float  # per request: e2e minus its own pipeline time, then the median


def server_pipeline_s(response: httpx.Response) -> float:
    stages = dict(part.strip().split(";dur=") for part in response.headers["server-timing"].split(","))
    return sum(float(stages[name]) for name in ("text", "unet", "vae")) / 1000


def latency_point(url: str, raw: RawPipeline, steps: int, repeats: int) -> LatencyPoint:
    """Concurrency 1, one image, raw PNG response; alternating an in-process pipeline run and an HTTP request."""
    pipeline, e2e, inside, overhead = [], [], [], []
    with httpx.Client(base_url=url, timeout=120, headers={"Accept": "image/png"}) as client:
        for seed in range(repeats + 3):
            pipeline_s = raw.latency(steps, seed)
            # A pause between the two: a runtime's idle threads spin for a while after a call (OpenVINO's TBB
            # workers, torch's OpenMP), and spinning in one process while the other computes slowed both ~2x here.
            time.sleep(0.05)
            start = time.perf_counter()
            response = client.post("/generate", json={"prompt": "a lighthouse", "seed": seed, "steps": steps})
            elapsed = time.perf_counter() - start
            response.raise_for_status()
            if seed >= 3:  # the first few warm up both
                pipeline.append(pipeline_s)
                e2e.append(elapsed)
                inside.append(server_pipeline_s(response))
                overhead.append(elapsed - inside[-1])
            time.sleep(0.05)
    ms = [statistics.median(values) * 1000 for values in (pipeline, e2e, inside, overhead)]
    return LatencyPoint(*ms)


@dataclass
class Throughput:
    images_per_s: float
    mean_batch: float
    p50_ms: float


async def throughput(url: str, concurrency: int, requests: int, steps: int) -> Throughput:
    """`requests` one-image requests from `concurrency` clients in closed loop; images per second."""
    counter = iter(range(requests))
    latencies: list[float] = []

    async def client_loop(client: httpx.AsyncClient) -> None:
        for seed in counter:
            start = time.perf_counter()
            body = {"prompt": f"prompt {seed}", "seed": seed, "steps": steps}
            response = await client.post("/generate", json=body)
            response.raise_for_status()
            latencies.append(time.perf_counter() - start)

    limits = httpx.Limits(max_connections=concurrency + 4)
    async with httpx.AsyncClient(base_url=url, timeout=300, limits=limits, headers={"Accept": "image/png"}) as client:
        before = batch_stats(url)
        start = time.perf_counter()
        await asyncio.gather(*(client_loop(client) for _ in range(concurrency)))
        elapsed = time.perf_counter() - start
        after = batch_stats(url)
    batches = after[1] - before[1]
    mean_batch = (after[0] - before[0]) / batches if batches else 0.0
    return Throughput(requests / elapsed, mean_batch, statistics.median(latencies) * 1000)


# -- main -----------------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, default=ROOT / "models" / "scott-tiny", help="diffusers-format folder")
    parser.add_argument("--requests", type=int, default=64, help="requests per throughput point")
    parser.add_argument("--repeats", type=int, default=20, help="samples per latency point")
    parser.add_argument("--steps", type=int, default=4, help="sampler steps for the throughput runs")
    parser.add_argument("--max-wait-ms", type=float, default=5.0)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument("--backend", help="default: the device's (openvino on the CPU)")
    args = parser.parse_args()

    model: Path = args.model
    if not (model / "model_index.json").exists():
        parser.error(f"no model at {model} (the shipped one: git checkout -- models/scott-tiny)")
    import torch

    console.print(
        f"model {model}, torch {torch.__version__}, {torch.get_num_threads()} threads, "
        f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f}"
    )
    raw = RawPipeline(model, args.backend)
    console.print(f"backend {raw.pipeline.backend.name}, precision {raw.pipeline.backend.precision}")
    # Both servers run side by side (an idle one costs nothing) and the points alternate between
    # them, so a change in machine load hits batching on and off alike.
    off, on = (serve(model, args.backend, batch, args.max_wait_ms) for batch in (1, 8))
    with off as off_url, on as on_url:
        latency = {steps: latency_point(on_url, raw, steps, args.repeats) for steps in (1, 4)}
        del raw
        # Warm every batch size once: the first call of a new shape builds kernels (oneDNN).
        for url in (off_url, on_url):
            asyncio.run(throughput(url, max(args.concurrency), max(args.concurrency), args.steps))
        results: dict[int, dict[int, Throughput]] = {1: {}, 8: {}}
        for c in args.concurrency:
            results[1][c] = asyncio.run(throughput(off_url, c, args.requests, args.steps))
            results[8][c] = asyncio.run(throughput(on_url, c, args.requests, args.steps))

    print_latency(latency)
    print_throughput(results, args)
    console.print(f"load average at the end {os.getloadavg()[0]:.2f}")


def print_latency(points: dict[int, LatencyPoint]) -> None:
    table = Table(title="Latency at concurrency 1, batch 1, one image (median ms; batching-on server)")
    columns = ("steps", "pipeline + PNG", "HTTP e2e", "its pipeline", "overhead", "target e2e", "met")
    for column in columns:
        table.add_column(column, justify="right")
    for steps, p in points.items():
        target = p.pipeline_ms * 1.25 + 3.0
        table.add_row(
            str(steps),
            f"{p.pipeline_ms:.1f}",
            f"{p.e2e_ms:.1f}",
            f"{p.server_pipeline_ms:.1f}",
            f"{p.overhead_ms:.1f}",
            f"< {target:.1f}",
            "yes" if p.e2e_ms <= target else "NO",
        )
    console.print(table)
    console.print(
        "pipeline + PNG: the same work in this process; its pipeline: text+unet+vae inside the server for the same "
        "request; overhead: e2e minus its pipeline (HTTP, validation, queue, worker hand-off, PNG encode)"
    )


def print_throughput(results: dict[int, dict[int, Throughput]], args: argparse.Namespace) -> None:
    table = Table(title=f"Throughput, {args.steps} steps, {args.requests} one-image requests (images/s)")
    for column in ("concurrency", "batching off (max 1)", "batching on (max 8)", "speedup", "mean batch", "p50 on"):
        table.add_column(column, justify="right")
    for c in args.concurrency:
        off, on = results[1][c], results[8][c]
        table.add_row(
            str(c),
            f"{off.images_per_s:.1f}",
            f"{on.images_per_s:.1f}",
            f"{on.images_per_s / off.images_per_s:.2f}x",
            f"{on.mean_batch:.1f}",
            f"{on.p50_ms:.0f} ms",
        )
    console.print(table)
    if 8 in args.concurrency:
        speedup = results[8][8].images_per_s / results[1][8].images_per_s
        console.print(f"batching speedup at concurrency 8: {speedup:.2f}x (target >= 1.5x)")


if __name__ == "__main__":
    main()
