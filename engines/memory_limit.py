"""The memory this process may use: its cgroup's limit (v2 memory.max, v1 memory.limit_in_bytes), else the host's."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import psutil

CGROUP_ROOT = Path("/sys/fs/cgroup")
_UNLIMITED = 2**62  # cgroup v1 writes "no limit" as a page-rounded 2^63-1


@dataclass(frozen=True)
class MemoryLimit:
    bytes: int
    source: str  # where the number comes from, for messages: "cgroup memory.max" or "physical memory"

    def __str__(self) -> str:
        return f"{self.bytes / 2**30:.1f} GiB ({self.source})"


@dataclass(frozen=True)
class MemoryCgroup:
    """This process's cgroup in one hierarchy that can limit memory."""

    root: Path  # the hierarchy's top folder
    folder: Path  # this process's cgroup in it
    limit_file: str  # memory.max (v2) or memory.limit_in_bytes (v1)


def memory_cgroups(proc_cgroup: str, root: Path = CGROUP_ROOT) -> list[MemoryCgroup]:
    """This process's cgroup in each memory hierarchy, from the lines of /proc/self/cgroup."""
    found = []
    for line in proc_cgroup.splitlines():
        hierarchy, controllers, path = line.split(":", 2)
        if hierarchy == "0" and controllers == "":  # v2: one unified tree
            base, name = root if (root / "cgroup.controllers").is_file() else root / "unified", "memory.max"
        elif "memory" in controllers.split(","):  # v1: the memory controller's own tree
            base, name = root / "memory", "memory.limit_in_bytes"
        else:
            continue
        found.append(MemoryCgroup(base, base / path.lstrip("/"), name))
    return found


def _cgroup_limits(proc_cgroup: str, root: Path) -> list[int]:
    """Every memory limit on the way from this process's cgroup up to the root (the smallest one binds)."""
    limits = []
    for cgroup in memory_cgroups(proc_cgroup, root):
        folder = cgroup.folder
        while True:
            file = folder / cgroup.limit_file
            text = file.read_text().strip() if file.is_file() else "max"
            if text != "max" and int(text) < _UNLIMITED:
                limits.append(int(text))
            if folder == cgroup.root or cgroup.root not in folder.parents:
                break
            folder = folder.parent
    return limits


def memory_limit(root: Path = CGROUP_ROOT) -> MemoryLimit:
    """The tightest of the cgroup limits over this process and the physical memory."""
    physical = MemoryLimit(psutil.virtual_memory().total, "physical memory")
    try:
        limits = _cgroup_limits(Path("/proc/self/cgroup").read_text(), root)
    except (OSError, ValueError):  # no cgroups (macOS, some containers): the host's memory is the limit
        return physical
    tightest = min(limits, default=physical.bytes)
    return MemoryLimit(tightest, "cgroup limit") if tightest < physical.bytes else physical
