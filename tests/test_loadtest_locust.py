"""Real Locust (a subprocess, headless) against the real server: requests, reports, the SLO gate's exit code.

The live_server fixture serves the tiny model in this process; `python -m loadtests.run` starts its own
`scott serve` subprocess and must stop it.
"""

from __future__ import annotations

import csv
import importlib.util
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

# find_spec, not import: importing locust would gevent-monkey-patch this test process.
pytestmark = pytest.mark.skipif(importlib.util.find_spec("locust") is None, reason="needs the loadtest extra")

ROOT = Path(__file__).resolve().parents[1]
LOCUSTFILE = ROOT / "loadtests" / "locustfile.py"
STATS_COLUMNS = ["Type", "Name", "Request Count", "Failure Count", "Median Response Time", "Requests/s", "95%", "99%"]


def locust(host: str, out: Path, *options: str, seconds: int = 4, users: int = 4) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "locust", "-f", str(LOCUSTFILE), "--headless", "--host", host]
    command += ["-u", str(users), "-r", str(users), "-t", f"{seconds}s", "--only-summary"]
    command += ["--csv", str(out / "run"), "--slo-json", str(out / "slo.json"), *options]
    return subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=180)


def stats_rows(out: Path) -> dict[str, dict[str, str]]:
    with (out / "run_stats.csv").open(newline="") as file:
        reader = csv.DictReader(file)
        assert reader.fieldnames is not None and set(STATS_COLUMNS) <= set(reader.fieldnames)
        return {row["Name"]: row for row in reader}


def test_load_run_makes_requests_without_failures(live_server, tmp_path: Path) -> None:
    done = locust(live_server.url, tmp_path, "--image-steps", "1,4", "--slo-p95-ms", "60000")
    assert done.returncode == 0, done.stdout + done.stderr
    rows = stats_rows(tmp_path)
    total = rows["Aggregated"]
    assert int(total["Request Count"]) > 0
    assert int(total["Failure Count"]) == 0
    assert set(rows) <= {"Aggregated", "/generate steps=1", "/generate steps=4"}
    for name in ("run_stats_history.csv", "run_failures.csv", "run_exceptions.csv"):
        assert (tmp_path / name).exists()
    verdict = json.loads((tmp_path / "slo.json").read_text())
    assert verdict["passed"] is True
    assert verdict["measured"]["requests"] >= int(total["Request Count"])  # the CSV is written each second
    assert "SLO gate: PASSED" in done.stdout


def test_impossible_latency_fails_the_gate(live_server, tmp_path: Path) -> None:
    # JSON responses here: every image comes back fine (no failures), only the latency threshold fails.
    done = locust(live_server.url, tmp_path, "--image-format", "json", "--slo-p95-ms", "0.001", seconds=2, users=2)
    assert done.returncode == 1, done.stdout + done.stderr
    verdict = json.loads((tmp_path / "slo.json").read_text())
    checks = {check["name"]: check["passed"] for check in verdict["checks"]}
    assert checks == {"requests": True, "failure ratio": True, "p95 latency": False, "load-test errors": True}
    assert re.search(r"p95 latency\s+<= 0\.001 ms\s+\S+ ms\s+FAIL", done.stdout)


def test_rejected_requests_count_as_failures(live_server, tmp_path: Path) -> None:
    # steps=9 is outside 1-4: the server answers 422, which the user must record as a failure.
    done = locust(live_server.url, tmp_path, "--image-steps", "9", "--slo-max-failure-ratio", "0.5", seconds=2, users=2)
    assert done.returncode == 1, done.stdout + done.stderr
    total = stats_rows(tmp_path)["Aggregated"]
    assert int(total["Request Count"]) > 0
    assert total["Failure Count"] == total["Request Count"]
    with (tmp_path / "run_failures.csv").open(newline="") as file:
        errors = [row["Error"] for row in csv.DictReader(file)]
    assert errors and all("HTTP 422: steps" in error for error in errors)


def test_a_server_with_api_keys_is_loaded_with_the_key(tiny_model_dir: Path, tmp_path: Path, monkeypatch) -> None:
    from server.app import create_app
    from server.settings import ServerSettings
    from tests.support.background_server import BackgroundServer

    settings = ServerSettings(model_dir=tiny_model_dir, backend="torch", device="cpu", api_keys="load-key-0123456789")
    for name in ("keyless", "keyed"):
        (tmp_path / name).mkdir()
    with BackgroundServer(create_app(settings)) as server:
        keyless = locust(server.url, tmp_path / "keyless", "--image-steps", "1", seconds=2, users=1)
        monkeypatch.setenv("LOCUST_API_KEY", "load-key-0123456789")
        keyed = locust(server.url, tmp_path / "keyed", "--image-steps", "1", seconds=2, users=1)
    assert keyless.returncode == 1 and "HTTP 401" in (tmp_path / "keyless" / "run_failures.csv").read_text()
    assert keyed.returncode == 0, keyed.stdout + keyed.stderr
    total = stats_rows(tmp_path / "keyed")["Aggregated"]
    assert int(total["Request Count"]) > 0 and int(total["Failure Count"]) == 0


@pytest.mark.slow  # a real ramp against its own `scott serve`: about 20 s
def test_runner_ramps_against_its_own_server_and_stops_it(tiny_model_dir: Path, tmp_path: Path) -> None:
    command = [sys.executable, "-m", "loadtests.run", "--model", str(tiny_model_dir), "--reports", str(tmp_path)]
    command += ["--users", "2", "--ramp-up", "1", "--ramp-hold", "3", "--image-steps", "1", "--slo-p95-ms", "60000"]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    pid = int(re.search(r"server ready \(pid (\d+)\)", done.stdout).group(1))  # type: ignore[union-attr]
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)  # stopped (and reaped) by the runner
    for name in ("locust_stats.csv", "locust_stats_history.csv", "report.html", "slo.json", "server.log"):
        assert (tmp_path / name).exists(), name
    with (tmp_path / "locust_stats_history.csv").open(newline="") as file:
        users = [int(row["User Count"]) for row in csv.DictReader(file)]
    assert max(users) == 2  # the ramp reached its peak; the shape then ended the run without -t
    assert json.loads((tmp_path / "slo.json").read_text())["passed"] is True
