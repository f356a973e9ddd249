"""A ramp for Locust: users rise linearly to a peak, hold there, then the test stops by itself.

    locust -f loadtests/locustfile.py,loadtests/shape.py --headless --host URL --ramp-users 8 --ramp-up 20

Also LOCUST_RAMP_USERS, LOCUST_RAMP_UP, LOCUST_RAMP_HOLD. A shape replaces -u/-r/-t.
"""

from __future__ import annotations

from typing import Any

from locust import LoadTestShape, events


@events.init_command_line_parser.add_listener
def _arguments(parser: Any) -> None:
    parser.add_argument("--ramp-users", type=int, default=8, env_var="LOCUST_RAMP_USERS", help="peak users")
    parser.add_argument("--ramp-up", type=float, default=20.0, env_var="LOCUST_RAMP_UP", help="seconds to the peak")
    parser.add_argument("--ramp-hold", type=float, default=40.0, env_var="LOCUST_RAMP_HOLD", help="seconds at the peak")


def ramp_tick(elapsed_s: float, users: int, ramp_up_s: float, hold_s: float) -> tuple[int, float] | None:
    """(target users, spawn rate) at `elapsed_s`, or None once the hold is over.

    The spawn rate makes the ramp: Locust starts users at `users / ramp_up_s` per second toward the peak.
    """
    if users < 1 or ramp_up_s < 0 or hold_s < 0:
        raise ValueError(f"need users >= 1 and non-negative times, got {users}, {ramp_up_s}, {hold_s}")
    if elapsed_s >= ramp_up_s + hold_s:
        return None
    return users, (users / ramp_up_s if ramp_up_s > 0 else float(users))


class RampShape(LoadTestShape):
    def tick(self) -> tuple[int, float] | None:
        parsed = self.runner.environment.parsed_options if self.runner else None
        return ramp_tick(
            self.get_run_time(),
            getattr(parsed, "ramp_users", 8),
            getattr(parsed, "ramp_up", 20.0),
            getattr(parsed, "ramp_hold", 40.0),
        )
