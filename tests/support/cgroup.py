"""A real memory cgroup for a test's subprocess: a child of this process's own cgroup with memory.max (v2) or
memory.limit_in_bytes (v1) set, so the kernel, not the test, enforces the limit."""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Iterator
from pathlib import Path

from engines.memory_limit import MemoryCgroup, memory_cgroups


def _own_memory_cgroup() -> MemoryCgroup | None:
    """This process's memory cgroup where one can be made under it, or None."""
    for cgroup in memory_cgroups(Path("/proc/self/cgroup").read_text()):
        if (cgroup.folder / cgroup.limit_file).is_file() and os.access(cgroup.folder, os.W_OK):
            return cgroup
    return None


def cgroup_unavailable() -> str | None:
    """Why no memory cgroup can be made here (a skip reason), or None."""
    try:
        found = _own_memory_cgroup()
    except OSError as exc:
        return f"cannot read /proc/self/cgroup: {exc}"
    return None if found is not None else "no writable memory cgroup (needs root and a cgroup v1/v2 memory controller)"


@contextlib.contextmanager
def memory_cgroup(limit_bytes: int) -> Iterator[Path]:
    """A new cgroup limited to limit_bytes; yields its cgroup.procs file (write a pid there to move a process in)."""
    own = _own_memory_cgroup()
    if own is None:
        raise RuntimeError(cgroup_unavailable())
    folder = own.folder / f"scott-test-{uuid.uuid4().hex[:8]}"
    folder.mkdir()
    try:
        (folder / own.limit_file).write_text(str(limit_bytes))
        yield folder / "cgroup.procs"
    finally:
        with contextlib.suppress(OSError):  # busy while a process is still inside: the kernel frees it when empty
            folder.rmdir()


def argv_in(procs: Path, argv: list[str]) -> list[str]:
    """argv run inside the cgroup whose cgroup.procs file is `procs` (the shell joins it, then becomes argv)."""
    return ["sh", "-c", f'echo $$ > "{procs}" && exec "$@"', "sh", *argv]
