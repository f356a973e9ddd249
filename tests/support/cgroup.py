"""A real memory cgroup for a test's subprocess: a child of this process's own cgroup with memory.max (v2) or
memory.limit_in_bytes (v1) set, so the kernel, not the test, enforces the limit."""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Iterator
from pathlib import Path

ROOT = Path("/sys/fs/cgroup")


def _own_memory_cgroup() -> tuple[Path, str] | None:
    """(folder of this process's memory cgroup, the limit file's name), or None where none is writable."""
    for line in Path("/proc/self/cgroup").read_text().splitlines():
        hierarchy, controllers, path = line.split(":", 2)
        if "memory" in controllers.split(","):
            folder, name = ROOT / "memory" / path.lstrip("/"), "memory.limit_in_bytes"
        elif hierarchy == "0" and controllers == "" and (ROOT / "cgroup.controllers").is_file():
            folder, name = ROOT / path.lstrip("/"), "memory.max"
        else:
            continue
        if folder.is_dir() and os.access(folder, os.W_OK):
            return folder, name
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
    found = _own_memory_cgroup()
    if found is None:
        raise RuntimeError(cgroup_unavailable())
    parent, limit_file = found
    folder = parent / f"scott-test-{uuid.uuid4().hex[:8]}"
    folder.mkdir()
    try:
        (folder / limit_file).write_text(str(limit_bytes))
        yield folder / "cgroup.procs"
    finally:
        with contextlib.suppress(OSError):  # busy while a process is still inside: the kernel frees it when empty
            folder.rmdir()


def argv_in(procs: Path, argv: list[str]) -> list[str]:
    """argv run inside the cgroup whose cgroup.procs file is `procs` (the shell joins it, then becomes argv)."""
    return ["sh", "-c", f'echo $$ > "{procs}" && exec "$@"', "sh", *argv]
