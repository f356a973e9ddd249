"""`make loadtest`: start `scott serve`, wait for /readyz, run Locust headless, write reports, stop the server.

    .venv/bin/python -m loadtests.run --model models/scott-tiny --slo-p95-ms 2000
    .venv/bin/python -m loadtests.run --url http://127.0.0.1:8000 --shape constant --users 4 --run-time 30s

Exit code: Locust's, i.e. the SLO gate's (0 pass, 1 fail); 2 when the server never became ready.
Reports: <reports>/locust_stats.csv, locust_stats_history.csv, locust_failures.csv, locust_exceptions.csv,
report.html, slo.json, and server.log for a server this runner started.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

from loadtests.server_process import ServerProcess, free_port

ROOT = Path(__file__).resolve().parents[1]
LOCUSTFILE = ROOT / "loadtests" / "locustfile.py"
SHAPE = ROOT / "loadtests" / "shape.py"
CSV_PREFIX = "locust"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    target = parser.add_argument_group("server")
    target.add_argument("--model", type=Path, default=ROOT / "models" / "scott-tiny", help="model folder to serve")
    target.add_argument("--url", help="load-test this running server instead of starting one")
    target.add_argument("--backend", default=None, help="scott serve --backend")
    target.add_argument("--max-batch-size", type=int, default=None, help="scott serve --max-batch-size")
    target.add_argument("--ready-timeout-s", type=float, default=300.0)
    load = parser.add_argument_group("load")
    load.add_argument("--shape", choices=("ramp", "constant"), default="ramp")
    load.add_argument("--users", type=int, default=8, help="peak (ramp) or constant users")
    load.add_argument("--ramp-up", type=float, default=20.0, help="ramp: seconds to the peak")
    load.add_argument("--ramp-hold", type=float, default=40.0, help="ramp: seconds at the peak")
    load.add_argument("--spawn-rate", type=float, default=2.0, help="constant: users started per second")
    load.add_argument("--run-time", default="60s", help="constant: e.g. 30s, 2m")
    load.add_argument("--image-steps", default="1,2,3,4")
    load.add_argument("--image-format", choices=("png", "json"), default="png")
    gate = parser.add_argument_group("SLO gate")
    gate.add_argument("--slo-max-failure-ratio", type=float, default=0.01)
    gate.add_argument("--slo-p95-ms", type=float, default=None)
    gate.add_argument("--slo-p99-ms", type=float, default=None)
    parser.add_argument("--reports", type=Path, default=ROOT / "loadtests" / "reports")
    parser.add_argument("locust_args", nargs="*", help="more Locust options, after --")
    return parser.parse_args(argv)


def locust_command(args: argparse.Namespace, host: str) -> list[str]:
    """The headless Locust invocation for these options against `host`."""
    reports: Path = args.reports
    files = f"{LOCUSTFILE},{SHAPE}" if args.shape == "ramp" else str(LOCUSTFILE)
    command = [sys.executable, "-m", "locust", "-f", files, "--headless", "--host", host, "--only-summary"]
    command += ["--csv", str(reports / CSV_PREFIX), "--csv-full-history", "--html", str(reports / "report.html")]
    if args.shape == "ramp":
        command += ["--ramp-users", str(args.users), "--ramp-up", str(args.ramp_up), "--ramp-hold", str(args.ramp_hold)]
    else:
        command += ["--users", str(args.users), "--spawn-rate", str(args.spawn_rate), "--run-time", args.run_time]
    command += ["--image-steps", args.image_steps, "--image-format", args.image_format]
    command += ["--slo-max-failure-ratio", str(args.slo_max_failure_ratio), "--slo-json", str(reports / "slo.json")]
    for flag, value in (("--slo-p95-ms", args.slo_p95_ms), ("--slo-p99-ms", args.slo_p99_ms)):
        if value is not None:
            command += [flag, str(value)]
    return command + list(args.locust_args)


def server_command(args: argparse.Namespace, port: int) -> list[str]:
    command = [sys.executable, "-m", "server.cli", "serve", "--model", str(args.model)]
    command += ["--host", "127.0.0.1", "--port", str(port), "--log-level", "warning"]
    if args.backend:
        command += ["--backend", args.backend]
    if args.max_batch_size:
        command += ["--max-batch-size", str(args.max_batch_size)]
    return command


def run_locust(args: argparse.Namespace, host: str) -> int:
    args.reports.mkdir(parents=True, exist_ok=True)
    print(f"locust -> {host}, reports in {args.reports}", flush=True)
    return subprocess.run(locust_command(args, host), cwd=ROOT, check=False).returncode


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.url:
        return run_locust(args, args.url.rstrip("/"))
    if not (args.model / "model_index.json").exists():
        print(f"no model at {args.model} (git checkout -- models/scott-tiny, or make embedded-model)", file=sys.stderr)
        return 2
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    server = ServerProcess(
        server_command(args, port),
        url,
        ready_timeout_s=args.ready_timeout_s,
        log_path=args.reports / "server.log",
        cwd=ROOT,
    )
    print(f"starting scott serve on {url} ({args.model})", flush=True)
    server.start()
    try:
        try:
            server.wait_ready()
        except (RuntimeError, TimeoutError) as error:
            print(f"server not ready: {error}", file=sys.stderr)
            return 2
        print(f"server ready (pid {server.pid})", flush=True)
        code = run_locust(args, url)
    finally:
        stopped = server.stop()
        print(f"server pid {server.pid} stopped (exit code {stopped})", flush=True)
    print(f"load test {'passed' if code == 0 else f'FAILED (exit code {code})'}", flush=True)
    return code


if __name__ == "__main__":
    sys.exit(main())
