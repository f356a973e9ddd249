"""How many CPU threads inference gets: one per physical core this process may use."""

from __future__ import annotations

import os


def physical_cores() -> int:
    """Physical cores this process may run on (affinity and cgroup-visible CPUs, hyper-threads not counted)."""
    import psutil

    logical = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    physical = psutil.cpu_count(logical=False) or logical
    return max(1, min(physical, logical))
