"""Helpers shared by the test_deploy_* modules.

What the deployment files must agree with lives in the code, so the helpers read it from there: the server's
settings (SCOTT_* variables), the metric names the running server exports, and the shutdown timing.
"""

from __future__ import annotations

import functools
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from server.settings import ServerSettings

ROOT = Path(__file__).resolve().parents[2]  # the repository
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
# Read outside ServerSettings: engines.onnx_export.default_cache_dir (ONNX exports and TensorRT engines).
EXTRA_ENV = {"SCOTT_CACHE_DIR"}
# Labels Prometheus attaches to every scraped series (from the target), besides the server's own.
TARGET_LABELS = {"instance", "job", "namespace", "pod", "service"}
UNPINNED_TAGS = {"", "latest"}


def require_tool(name: str, *, installed_by_ci: bool, hint: str) -> str:
    """The path of an executable; skip without it, except in CI where .ci/run installs it (then fail)."""
    path = shutil.which(name)
    if path is None:
        venv_bin = Path(sys.executable).parent / name  # tools the dev extra installs (hadolint)
        path = str(venv_bin) if venv_bin.is_file() else None
    if path is not None:
        return path
    if IN_CI and installed_by_ci:
        pytest.fail(f"{name} is missing in CI, where .ci/run should have installed it ({hint})")
    pytest.skip(f"{name} is not installed ({hint})")


def run(argv: list[str], cwd: Path = ROOT, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, cwd=cwd, capture_output=True, text=True, timeout=timeout, check=False)


@functools.cache
def compose_cli() -> tuple[str, ...]:
    """`docker compose` (v2 plugin) if present, else `docker-compose` (v1, Debian's; .ci/run installs it)."""
    docker = run(["docker", "compose", "version"]) if shutil.which("docker") else None
    if docker is not None and docker.returncode == 0:
        return ("docker", "compose")
    return (require_tool("docker-compose", installed_by_ci=True, hint="apt-get install docker-compose"),)


# -- settings ------------------------------------------------------------------------------------------


def setting_env_names() -> set[str]:
    """Every SCOTT_* variable the server reads."""
    prefix = ServerSettings.model_config.get("env_prefix", "")
    return {f"{prefix}{name}".upper() for name in ServerSettings.model_fields} | EXTRA_ENV


def unknown_env(env: Mapping[str, object]) -> list[str]:
    """SCOTT_* names in env that nothing reads (pydantic-settings ignores them silently: a typo would)."""
    known = setting_env_names()
    return sorted(name for name in env if name.startswith("SCOTT_") and name not in known)


def settings_from_env(env: Mapping[str, object], monkeypatch: pytest.MonkeyPatch) -> ServerSettings:
    """The ServerSettings a server started with exactly these SCOTT_* variables would have (validated)."""
    for name in list(os.environ):
        if name.startswith("SCOTT_"):
            monkeypatch.delenv(name)
    for name, value in env.items():
        if name.startswith("SCOTT_"):
            monkeypatch.setenv(name, str(value))
    return ServerSettings()


def shutdown_bound_s(settings: ServerSettings) -> float:
    """Longest a SIGTERM'd server runs before it exits, without the last batch: it keeps serving for
    drain_seconds, then stops admitting; every admitted request ends by its deadline (request_timeout_s) and
    the drain gives up after drain_timeout_s, whichever is longer bounds the wait (see server/service.py)."""
    drain_seconds = getattr(settings, "drain_seconds", 0.0)
    return drain_seconds + max(settings.drain_timeout_s, settings.request_timeout_s)


def parse_duration_s(text: str | int | float) -> float:
    """'1m30s', '60s', '75' (seconds) -> seconds, as compose and Docker write durations."""
    if isinstance(text, int | float):
        return float(text)
    units = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001, "us": 1e-6}
    parts = re.findall(r"(\d+(?:\.\d+)?)(ms|us|h|m|s)?", text.strip())
    if not parts or "".join(n + u for n, u in parts) != text.strip():
        raise ValueError(f"not a duration: {text!r}")
    return sum(float(n) * units[u or "s"] for n, u in parts)


# -- the app ---------------------------------------------------------------------------------------------


@functools.cache
def exported_series(url: str) -> dict[str, set[str]]:
    """Series name -> label names, scraped from the real server at url after one generation, so every
    histogram has observations; series of families still without samples are named from the family's type."""
    body = {"prompt": "a red circle", "steps": 1, "seed": 0}
    assert httpx.post(f"{url}/generate", json=body, timeout=60).status_code == 200
    text = httpx.get(f"{url}/metrics", timeout=10).text
    series: dict[str, set[str]] = {}
    for family in text_string_to_metric_families(text):
        if not family.samples:
            suffixes = {"histogram": ("_bucket", "_sum", "_count"), "counter": ("_total",)}.get(family.type, ("",))
            for suffix in suffixes:
                series.setdefault(family.name + suffix, {"le"} if suffix == "_bucket" else set())
        for sample in family.samples:
            series.setdefault(sample.name, set()).update(sample.labels)
    return series


def image_tag(image: str) -> str:
    """The tag of an image reference ('' when it has none); a digest pins too."""
    if "@sha256:" in image:
        return "sha256"
    name = image.rsplit("/", 1)[-1]
    return name.split(":", 1)[1] if ":" in name else ""
