"""Locust load test of POST /generate: varied prompts, steps and seeds; a response without an image is a failure.

    locust -f loadtests/locustfile.py --headless -u 8 -r 2 -t 60s --host http://127.0.0.1:8000
    locust -f loadtests/locustfile.py,loadtests/shape.py --headless --host ...   # ramp up, hold, stop

Options below also read LOCUST_* environment variables (e.g. LOCUST_IMAGE_STEPS=4, LOCUST_SLO_P95_MS=500);
a server with API keys takes LOCUST_API_KEY (an environment variable keeps it off the command line).
When Locust quits, the SLO gate (loadtests/slo.py) prints its table and sets the exit code: 0 pass, 1 fail.
Talks HTTP only: needs Locust and this folder, not the server's code.
"""

from __future__ import annotations

import functools
import itertools
import json
import random
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from locust import HttpUser, events, task
from locust.runners import WorkerRunner

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # `loadtests.*` from any working directory
from loadtests.checks import image_problem
from loadtests.slo import Measured, Thresholds, evaluate

DEFAULT_PROMPTS = Path(__file__).with_name("prompts.txt")
FORMATS = ("png", "json")
_user_ids = itertools.count()


@events.init_command_line_parser.add_listener
def _arguments(parser: Any) -> None:
    parser.add_argument("--prompts", default=str(DEFAULT_PROMPTS), env_var="LOCUST_PROMPTS", help="one prompt a line")
    parser.add_argument(
        "--image-steps", default="1,2,3,4", env_var="LOCUST_IMAGE_STEPS", help="steps to draw from, e.g. 4 or 1,2,4"
    )
    parser.add_argument(
        "--image-format", default="png", choices=FORMATS, env_var="LOCUST_IMAGE_FORMAT", help="Accept: image/png|JSON"
    )
    # Prefer the variable: a command line shows in `ps`. Masked in Locust's web UI.
    parser.add_argument(
        "--api-key", default=None, env_var="LOCUST_API_KEY", is_secret=True, help="the server's API key, if it has keys"
    )
    parser.add_argument("--think-time", type=float, default=0.0, env_var="LOCUST_THINK_TIME", help="max s between")
    parser.add_argument("--request-timeout", type=float, default=120.0, env_var="LOCUST_REQUEST_TIMEOUT")
    parser.add_argument("--load-seed", type=int, default=0, env_var="LOCUST_LOAD_SEED", help="seeds the request mix")
    parser.add_argument("--slo-max-failure-ratio", type=float, default=0.01, env_var="LOCUST_SLO_MAX_FAILURE_RATIO")
    parser.add_argument("--slo-p95-ms", type=float, default=None, env_var="LOCUST_SLO_P95_MS", help="unset: no check")
    parser.add_argument("--slo-p99-ms", type=float, default=None, env_var="LOCUST_SLO_P99_MS", help="unset: no check")
    parser.add_argument("--slo-min-requests", type=int, default=1, env_var="LOCUST_SLO_MIN_REQUESTS")
    parser.add_argument("--slo-json", default=None, env_var="LOCUST_SLO_JSON", help="write the gate's verdict here")


@dataclass(frozen=True)
class UserOptions:
    prompts: str = str(DEFAULT_PROMPTS)
    image_steps: str = "1,2,3,4"
    image_format: str = "png"
    think_time: float = 0.0
    request_timeout: float = 120.0
    load_seed: int = 0
    api_key: str | None = None  # sent as Authorization: Bearer KEY

    @classmethod
    def from_parsed(cls, parsed: Any) -> UserOptions:
        """Locust's parsed options; the defaults where there are none (the library API without a parser)."""
        defaults = cls()
        return cls(**{name: getattr(parsed, name, getattr(defaults, name)) for name in cls.__dataclass_fields__})

    @property
    def steps(self) -> tuple[int, ...]:
        # Not range-checked here: the server is the judge (a test sends steps it must reject).
        steps = tuple(int(part) for part in self.image_steps.split(",") if part.strip())
        if not steps:
            raise ValueError(f"--image-steps names no steps: {self.image_steps!r}")
        return steps


@functools.cache
def load_prompts(path: str) -> tuple[str, ...]:
    prompts = tuple(line.strip() for line in Path(path).read_text().splitlines() if line.strip())
    if not prompts:
        raise ValueError(f"no prompts in {path}")
    return prompts


class ImageUser(HttpUser):
    """One client in closed loop: POST /generate with a random prompt, steps and seed, then (optionally) think."""

    def on_start(self) -> None:
        self.options = UserOptions.from_parsed(self.environment.parsed_options)
        if self.options.image_format not in FORMATS:
            raise ValueError(f"--image-format must be one of {FORMATS}, got {self.options.image_format!r}")
        self.prompts, self.steps = load_prompts(self.options.prompts), self.options.steps
        # Per-user stream: the same --load-seed replays the same requests (in each user's own order).
        self.rng = random.Random(f"{self.options.load_seed}:{next(_user_ids)}")

    def wait_time(self) -> float:
        return self.rng.uniform(0.0, self.options.think_time) if self.options.think_time > 0 else 0.0

    @task
    def generate(self) -> None:
        steps = self.rng.choice(self.steps)
        body = {"prompt": self.rng.choice(self.prompts), "steps": steps, "seed": self.rng.randrange(2**32)}
        want = self.options.image_format
        accept = "image/png" if want == "png" else "application/json"
        headers = {"Accept": accept}
        if self.options.api_key:
            headers["Authorization"] = f"Bearer {self.options.api_key}"
        with self.client.post(
            "/generate",
            json=body,
            headers=headers,
            name=f"/generate steps={steps}",
            timeout=self.options.request_timeout,
            catch_response=True,
        ) as response:
            if response.status_code == 0:  # no HTTP response at all: refused, reset, timed out
                response.failure(f"connection error: {type(response.error).__name__}")
                return
            problem = image_problem(
                response.status_code, response.headers.get("content-type", ""), response.content or b"", want
            )
            if problem:
                response.failure(problem)
            else:
                response.success()


@events.quitting.add_listener
def _slo_gate(environment: Any, **_: Any) -> None:
    """Judge the whole run and set the exit code (the master or a local runner; workers hold partial stats)."""
    if isinstance(environment.runner, WorkerRunner) or environment.runner is None:
        return
    parsed = environment.parsed_options
    thresholds = Thresholds(
        max_failure_ratio=getattr(parsed, "slo_max_failure_ratio", 0.01),
        max_p95_ms=getattr(parsed, "slo_p95_ms", None),
        max_p99_ms=getattr(parsed, "slo_p99_ms", None),
        min_requests=getattr(parsed, "slo_min_requests", 1),
    )
    errors = sum(int(entry["count"]) for entry in environment.runner.exceptions.values())
    result = evaluate(Measured.from_locust(environment.stats.total, errors), thresholds)
    print(result.table(), flush=True)
    if path := getattr(parsed, "slo_json", None):
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_text(json.dumps(result.to_json(), indent=2) + "\n")
    environment.process_exit_code = 0 if result.passed else 1
