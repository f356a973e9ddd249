"""The SLO gate: thresholds on failure ratio and latency percentiles, checked against a run's totals.

Pure (no Locust import) so it is testable alone; the locustfile feeds it Locust's aggregated stats when Locust
quits and turns the verdict into the process exit code.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any


@dataclass(frozen=True)
class Thresholds:
    """None switches a latency check off; a run with fewer than min_requests requests fails (no load is no pass)."""

    max_failure_ratio: float = 0.01
    max_p95_ms: float | None = None
    max_p99_ms: float | None = None
    min_requests: int = 1

    def __post_init__(self) -> None:
        if not 0.0 <= self.max_failure_ratio <= 1.0:
            raise ValueError(f"max_failure_ratio must lie in [0, 1], got {self.max_failure_ratio}")
        for name in ("max_p95_ms", "max_p99_ms"):
            value = getattr(self, name)
            if value is not None and value <= 0:
                raise ValueError(f"{name} must be > 0 ms (or unset), got {value}")


@dataclass(frozen=True)
class Measured:
    """A run's totals over every request (Locust's 'Aggregated' row); failed requests count in the percentiles."""

    requests: int
    failures: int
    p95_ms: float
    p99_ms: float
    p50_ms: float = 0.0
    requests_per_s: float = 0.0  # over the run, failures included
    errors: int = 0  # exceptions raised by the load-test code itself: a broken test must not pass

    @property
    def failure_ratio(self) -> float:
        return self.failures / self.requests if self.requests else 0.0

    @classmethod
    def from_locust(cls, total: Any, errors: int = 0) -> Measured:
        """From locust's StatsEntry (environment.stats.total)."""
        return cls(
            requests=total.num_requests,
            failures=total.num_failures,
            p95_ms=float(total.get_response_time_percentile(0.95) or 0.0),
            p99_ms=float(total.get_response_time_percentile(0.99) or 0.0),
            p50_ms=float(total.get_response_time_percentile(0.50) or 0.0),
            requests_per_s=float(total.total_rps),
            errors=errors,
        )


@dataclass(frozen=True)
class Check:
    name: str
    limit: str
    measured: str
    passed: bool


@dataclass(frozen=True)
class GateResult:
    checks: tuple[Check, ...]
    measured: Measured
    thresholds: Thresholds

    @property
    def passed(self) -> bool:
        return all(check.passed for check in self.checks)

    def table(self) -> str:
        """A fixed-width table of every check and the verdict, for the console."""
        rows = [("check", "limit", "measured", "result")]
        rows += [(c.name, c.limit, c.measured, "pass" if c.passed else "FAIL") for c in self.checks]
        widths = [max(len(row[i]) for row in rows) for i in range(4)]
        lines = [f"SLO gate: {'PASSED' if self.passed else 'FAILED'}"]
        lines += ["  " + "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)) for row in rows]
        return "\n".join(line.rstrip() for line in lines)

    def to_json(self) -> dict[str, Any]:
        return {
            "passed": self.passed,
            "checks": [asdict(c) for c in self.checks],
            "measured": {**asdict(self.measured), "failure_ratio": self.measured.failure_ratio},
            "thresholds": asdict(self.thresholds),
        }


def evaluate(measured: Measured, thresholds: Thresholds) -> GateResult:
    """Every configured check, in a fixed order; the gate passes when all pass."""
    m, t = measured, thresholds
    checks = [
        Check("requests", f">= {t.min_requests}", str(m.requests), m.requests >= t.min_requests),
        Check(
            "failure ratio",
            f"<= {t.max_failure_ratio:.2%}",
            f"{m.failure_ratio:.2%} ({m.failures}/{m.requests})",
            m.failure_ratio <= t.max_failure_ratio,
        ),
    ]
    for name, limit, value in (("p95 latency", t.max_p95_ms, m.p95_ms), ("p99 latency", t.max_p99_ms, m.p99_ms)):
        if limit is not None:
            checks.append(Check(name, f"<= {limit:g} ms", f"{value:g} ms", value <= limit))
    checks.append(Check("load-test errors", "0", str(m.errors), m.errors == 0))
    return GateResult(tuple(checks), measured, thresholds)
