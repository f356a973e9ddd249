"""A ramp for Locust: users rise linearly to a peak, hold there, then the test stops by itself.

    locust -f loadtests/locustfile.py,loadtests/shape.py --headless --host URL --ramp-users 8 --ramp-up 20

Also LOCUST_RAMP_USERS, LOCUST_RAMP_UP, LOCUST_RAMP_HOLD. A shape replaces -u/-r/-t.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from locust import LoadTestShape, events

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # `loadtests.*` from any working directory
from loadtests.ramp import ramp_tick


@events.init_command_line_parser.add_listener
def _arguments(parser: Any) -> None:
    parser.add_argument("--ramp-users", type=int, default=8, env_var="LOCUST_RAMP_USERS", help="peak users")
    parser.add_argument("--ramp-up", type=float, default=20.0, env_var="LOCUST_RAMP_UP", help="seconds to the peak")
    parser.add_argument("--ramp-hold", type=float, default=40.0, env_var="LOCUST_RAMP_HOLD", help="seconds at the peak")


class RampShape(LoadTestShape):
    def tick(self) -> tuple[int, float] | None:
        parsed = self.runner.environment.parsed_options if self.runner else None
        return ramp_tick(
            self.get_run_time(),
            getattr(parsed, "ramp_users", 8),
            getattr(parsed, "ramp_up", 20.0),
            getattr(parsed, "ramp_hold", 40.0),
        )
