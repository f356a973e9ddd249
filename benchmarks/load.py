"""Load benchmark: our server (`scott serve`, batching on) vs the server a user would otherwise write.

    .venv/bin/python -m benchmarks.load [--model DIR] [--users 8] [--run-time 60] [--warmup 15] [--steps 4]
                                         [--rounds 1] [--json results.json]

The baseline is benchmarks.naive_server: FastAPI + diffusers' LatentConsistencyModelPipeline on the same
model folder, one request at a time. Both run as subprocesses side by side (an idle one costs nothing) and
get the same Locust load (loadtests/locustfile.py, `--users` closed-loop users, one image per request, PNG,
the same prompt/seed stream); each gets a warm-up run first, then the measured runs alternate between them.
Target: at least 2x the images/s of the baseline at no worse p95 latency.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from rich.console import Console
from rich.table import Table

from loadtests.server_process import ServerProcess, batch_totals, free_port

ROOT = Path(__file__).resolve().parents[1]
LOCUSTFILE = ROOT / "loadtests" / "locustfile.py"
SERVERS = ("scott serve", "naive diffusers")
console = Console(width=120)


@dataclass
class LoadResult:
    requests: int
    failures: int
    images_per_s: float  # successful one-image requests per second
    p50_ms: float
    p95_ms: float
    p99_ms: float
    mean_batch: float | None = None  # from the server's /metrics; None where it has none


def server_commands(args: argparse.Namespace, model: Path, ports: dict[str, int]) -> dict[str, list[str]]:
    ours = [sys.executable, "-m", "server.cli", "serve", "--model", str(model), "--port", str(ports[SERVERS[0]])]
    ours += ["--max-batch-size", str(args.max_batch_size), "--max-wait-ms", str(args.max_wait_ms)]
    ours += ["--request-timeout-s", "600", "--log-level", "warning"]  # the baseline has no deadline either
    naive = [sys.executable, "-m", "benchmarks.naive_server", "--model", str(model)]
    naive += ["--port", str(ports[SERVERS[1]])]
    if args.device:
        ours += ["--device", args.device]
        naive += ["--device", args.device]
    return {SERVERS[0]: ours, SERVERS[1]: naive}


def run_locust(args: argparse.Namespace, url: str, seconds: float, out: Path) -> LoadResult:
    """One headless Locust run with the shared locustfile; totals from its SLO-gate JSON (written at quit, complete)."""
    command = [sys.executable, "-m", "locust", "-f", str(LOCUSTFILE), "--headless", "--only-summary"]
    command += ["--host", url, "--users", str(args.users), "--spawn-rate", str(args.users)]
    command += ["--run-time", f"{seconds:g}s", "--image-steps", args.steps, "--image-format", "png"]
    command += ["--load-seed", "0", "--slo-max-failure-ratio", "1", "--slo-json", str(out.with_suffix(".json"))]
    before = batch_totals(url)
    with out.with_suffix(".log").open("w") as log:
        subprocess.run(command, cwd=ROOT, check=False, stdout=log, stderr=subprocess.STDOUT)
    after = batch_totals(url)
    if not out.with_suffix(".json").exists():
        raise RuntimeError(f"locust wrote no results; its output:\n{out.with_suffix('.log').read_text()[-3000:]}")
    m = json.loads(out.with_suffix(".json").read_text())["measured"]
    mean_batch = None
    if before and after and after[1] > before[1]:
        mean_batch = (after[0] - before[0]) / (after[1] - before[1])
    ok = m["requests"] - m["failures"]
    return LoadResult(
        requests=m["requests"],
        failures=m["failures"],
        images_per_s=m["requests_per_s"] * ok / m["requests"] if m["requests"] else 0.0,
        p50_ms=m["p50_ms"],
        p95_ms=m["p95_ms"],
        p99_ms=m["p99_ms"],
        mean_batch=mean_batch,
    )


def summarize(rounds: list[LoadResult]) -> LoadResult:
    """Median of every metric over the rounds (sums for the counts)."""

    def median(name: str) -> float:
        return statistics.median(getattr(r, name) for r in rounds)

    batches = [r.mean_batch for r in rounds if r.mean_batch is not None]
    return LoadResult(
        requests=sum(r.requests for r in rounds),
        failures=sum(r.failures for r in rounds),
        images_per_s=median("images_per_s"),
        p50_ms=median("p50_ms"),
        p95_ms=median("p95_ms"),
        p99_ms=median("p99_ms"),
        mean_batch=statistics.median(batches) if batches else None,
    )


def print_table(results: dict[str, LoadResult], args: argparse.Namespace) -> dict[str, float | bool]:
    title = (
        f"Locust, {args.users} users closed loop, steps {args.steps}, one PNG per request, "
        f"{args.rounds} x {args.run_time:g} s per server"
    )
    table = Table(title=title)
    for column in ("server", "images/s", "p50 ms", "p95 ms", "p99 ms", "failures", "requests", "mean batch"):
        table.add_column(column, justify="right")
    for name, r in results.items():
        table.add_row(
            name,
            f"{r.images_per_s:.2f}",
            f"{r.p50_ms:.0f}",
            f"{r.p95_ms:.0f}",
            f"{r.p99_ms:.0f}",
            str(r.failures),
            str(r.requests),
            "-" if r.mean_batch is None else f"{r.mean_batch:.1f}",
        )
    console.print(table)
    ours, naive = results[SERVERS[0]], results[SERVERS[1]]
    speedup = ours.images_per_s / naive.images_per_s if naive.images_per_s else float("inf")
    p95_ratio = ours.p95_ms / naive.p95_ms if naive.p95_ms else float("inf")
    met = speedup >= 2.0 and p95_ratio <= 1.0 and ours.failures == 0
    console.print(
        f"images/s ratio {speedup:.2f}x (target >= 2x); p95 {ours.p95_ms:.0f} ms vs {naive.p95_ms:.0f} ms "
        f"({p95_ratio:.2f}x, target <= 1x); failures {ours.failures}: target {'met' if met else 'NOT met'}"
    )
    return {"images_per_s_ratio": speedup, "p95_ratio": p95_ratio, "target_met": met}


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, default=ROOT / "models" / "scott-tiny", help="diffusers-format folder")
    parser.add_argument("--device", default=None, help="both servers; default: CUDA when present, else CPU")
    parser.add_argument("--users", type=int, default=8, help="concurrent closed-loop Locust users")
    parser.add_argument("--run-time", type=float, default=60.0, help="seconds per measured run")
    parser.add_argument("--warmup", type=float, default=15.0, help="seconds of discarded load per server first")
    parser.add_argument("--rounds", type=int, default=1, help="measured runs per server, alternating; medians")
    parser.add_argument("--steps", default="4", help="sampler steps, e.g. 4 or 1,2,3,4 (a mix)")
    parser.add_argument("--max-batch-size", type=int, default=8, help="scott serve --max-batch-size")
    parser.add_argument("--max-wait-ms", type=float, default=5.0, help="scott serve --max-wait-ms")
    parser.add_argument(
        "--threads", type=int, default=None, help="OMP/MKL threads of both servers; default: torch's (all cores)"
    )
    parser.add_argument("--json", type=Path, help="write the results here")
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    model: Path = args.model
    if not (model / "model_index.json").exists():
        raise SystemExit(f"no model at {model} (the shipped one: git checkout -- models/scott-tiny)")
    with tempfile.TemporaryDirectory(prefix="scott-load-") as tmp:
        machine = f"{platform.machine()}, {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f}"
        console.print(f"model {model}, {machine}")
        ports = {name: free_port() for name in SERVERS}
        urls = {name: f"http://127.0.0.1:{port}" for name, port in ports.items()}
        commands = server_commands(args, model, ports)
        rounds: dict[str, list[LoadResult]] = {name: [] for name in SERVERS}
        start = time.perf_counter()
        # Same thread settings for both: on a contended CPU, intra-op threads can cost more than they give.
        env = (
            {} if args.threads is None else {"OMP_NUM_THREADS": str(args.threads), "MKL_NUM_THREADS": str(args.threads)}
        )
        logs = {name: Path(tmp) / f"{name.split()[0]}.log" for name in SERVERS}
        with (
            ServerProcess(commands[SERVERS[0]], urls[SERVERS[0]], log_path=logs[SERVERS[0]], cwd=ROOT, env=env),
            ServerProcess(commands[SERVERS[1]], urls[SERVERS[1]], log_path=logs[SERVERS[1]], cwd=ROOT, env=env),
        ):
            for name in SERVERS:
                console.print(f"warm-up {name}: {args.warmup:g} s")
                run_locust(args, urls[name], args.warmup, Path(tmp) / "warmup")
            for index in range(args.rounds):
                for name in SERVERS if index % 2 == 0 else SERVERS[::-1]:
                    result = run_locust(args, urls[name], args.run_time, Path(tmp) / f"run{index}-{name.split()[0]}")
                    console.print(f"round {index + 1} {name}: {result.images_per_s:.2f} images/s")
                    rounds[name].append(result)
        results = {name: summarize(rounds[name]) for name in SERVERS}
    verdict = print_table(results, args)
    console.print(f"load average at the end {os.getloadavg()[0]:.2f}, {time.perf_counter() - start:.0f} s")
    if args.json:
        payload = {
            "config": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
            "model": str(model),
            "machine": machine,
            "results": {name: asdict(r) for name, r in results.items()},
            "rounds": {name: [asdict(r) for r in rs] for name, rs in rounds.items()},
            **verdict,
        }
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(payload, indent=2) + "\n")
        console.print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
