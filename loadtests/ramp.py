"""The ramp schedule (pure, no Locust import): users rise to a peak, hold, then the run ends."""

from __future__ import annotations


def ramp_tick(elapsed_s: float, users: int, ramp_up_s: float, hold_s: float) -> tuple[int, float] | None:
    """(target users, spawn rate) at `elapsed_s` into the run, or None once the hold is over (Locust stops).

    The spawn rate makes the ramp: Locust starts users at `users / ramp_up_s` per second toward the peak.
    """
    if users < 1 or ramp_up_s < 0 or hold_s < 0:
        raise ValueError(f"need users >= 1 and non-negative times, got {users}, {ramp_up_s}, {hold_s}")
    if elapsed_s >= ramp_up_s + hold_s:
        return None
    return users, (users / ramp_up_s if ramp_up_s > 0 else float(users))
