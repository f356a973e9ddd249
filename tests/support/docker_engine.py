"""A Docker engine and the stand-ins for registry images, for the deploy test that builds and runs the images
(tests/test_deploy_image.py); this module holds no tests.

The engine: the one that answers, else one started for the session (Linux, root, Debian's docker.io) and stopped
after. The stand-ins, made from Debian packages because no container registry is reachable here: the Python base
image (debootstrap bookworm + python3.11, the Python of python:3.11-slim-bookworm) and a torch index (the CPU wheel
pip finds on this machine, served over HTTP). The base image is built once per engine and kept in its data root.
"""

from __future__ import annotations

import contextlib
import hashlib
import http.server
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.support.deploy import IN_CI, ROOT

# Flags for an engine this module starts: vfs and no bridge/iptables work inside an unprivileged-overlay container
# (the CI machines); containers then reach each other on compose's own networks, builds use the host network.
DOCKERD_FLAGS = os.environ.get("SCOTT_TEST_DOCKERD_FLAGS", "--storage-driver=vfs --iptables=false --bridge=none")
DOCKERD_LIFETIME_S = 3600  # bound on an engine left behind by a killed test run
DEBIAN_MIRROR = os.environ.get("SCOTT_TEST_DEBIAN_MIRROR", "http://deb.debian.org/debian")
BASE_PACKAGES = "python3.11,python3.11-venv,python3-pip,python-is-python3,ca-certificates"
# The host's CA bundle goes into the base image: the machine's network may need a CA Debian does not ship.
HOST_CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")


def _skip_or_fail(reason: str, *, ci_installs_it: bool) -> None:
    """Skip naming what is missing, except in CI for what .ci/run installs (then the run is broken: fail)."""
    if IN_CI and ci_installs_it:
        pytest.fail(f"{reason} (.ci/run installs it)")
    pytest.skip(reason)


@dataclass
class Engine:
    cli: str  # a docker client that builds with BuildKit (the Dockerfile uses RUN --mount)
    env: dict[str, str]
    process: subprocess.Popen | None = None  # the dockerd this module started, if any
    bin_dir: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="scott-docker-bin-")))

    def __post_init__(self) -> None:
        # compose v1 shells out to `docker` for BuildKit builds: let it find this client first.
        (self.bin_dir / "docker").symlink_to(self.cli)
        self.env = {**self.env, "PATH": f"{self.bin_dir}{os.pathsep}{self.env.get('PATH', '')}"}

    def run(self, *args: str, timeout: float = 120, check: bool = True, **kw) -> subprocess.CompletedProcess[str]:
        return self.exec([self.cli, *args], timeout=timeout, check=check, **kw)

    def exec(self, argv: list[str], timeout: float = 120, check: bool = True, **kw) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            argv, cwd=kw.pop("cwd", ROOT), env={**self.env, **kw.pop("env", {})}, capture_output=True, text=True,
            timeout=timeout, check=False, **kw,
        )  # fmt: skip
        if check and result.returncode != 0:
            raise AssertionError(f"{' '.join(argv)} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}")
        return result

    def require_free_space(self, gigabytes: float) -> None:
        """Skip unless the engine's data root has this much free disk (a build that runs out fails far less clearly)."""
        root = self.run("info", "--format", "{{.DockerRootDir}}").stdout.strip()
        if not os.path.isdir(root):  # a remote engine: its disk is not ours to see
            return
        free = shutil.disk_usage(root).free / 1e9
        if free < gigabytes:
            pytest.skip(f"{gigabytes:.0f} GB of free disk needed in Docker's data root {root}, {free:.1f} GB free")

    def has_image(self, tag: str) -> bool:
        return self.run("image", "inspect", tag, check=False).returncode == 0

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()  # timeout(1) passes SIGTERM on to dockerd, which stops its containerd
            try:
                self.process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
        shutil.rmtree(self.bin_dir, ignore_errors=True)


def buildkit_client() -> tuple[str, dict[str, str]]:
    """(docker client, environment) that builds with BuildKit: one with the buildx plugin, else a client older than
    23.0 (docker.io's on Debian 12) whose built-in builder is BuildKit under DOCKER_BUILDKIT=1."""
    candidates = dict.fromkeys(p for p in (shutil.which("docker"), "/usr/bin/docker") if p and os.path.isfile(p))
    if not candidates:
        _skip_or_fail("no docker client (apt-get install docker.io)", ci_installs_it=True)
    env = {**os.environ, "DOCKER_BUILDKIT": "1", "COMPOSE_DOCKER_CLI_BUILD": "1"}
    for cli in candidates:
        if subprocess.run([cli, "buildx", "version"], capture_output=True, timeout=30).returncode == 0:
            return cli, env
        version = subprocess.run(
            [cli, "version", "--format", "{{.Client.Version}}"], capture_output=True, text=True, timeout=30
        ).stdout
        major = re.match(r"(\d+)\.", version)
        if major and int(major.group(1)) < 23:
            return cli, env
    _skip_or_fail(f"no docker client that builds with BuildKit among {list(candidates)}: install the buildx plugin or "
                  "Debian's docker.io", ci_installs_it=True)  # fmt: skip
    raise AssertionError("unreachable")


def start_engine() -> Engine:
    """The engine that answers, else a dockerd started here; skips naming what is missing."""
    cli, env = buildkit_client()
    if subprocess.run([cli, "info"], env=env, capture_output=True, timeout=60).returncode == 0:
        return Engine(cli, env)
    if not sys.platform.startswith("linux"):
        pytest.skip(f"no Docker engine answers, and one is started only on Linux (this is {sys.platform})")
    if os.geteuid() != 0:
        pytest.skip("no Docker engine answers, and starting dockerd needs root")
    dockerd = shutil.which("dockerd")
    if dockerd is None:
        _skip_or_fail("no Docker engine answers and dockerd is not installed (apt-get install docker.io)",
                      ci_installs_it=True)  # fmt: skip
    log = open(Path(tempfile.gettempdir()) / "scott-test-dockerd.log", "w")  # noqa: SIM115 (lives with the engine)
    process = subprocess.Popen(
        ["timeout", str(DOCKERD_LIFETIME_S), dockerd, *DOCKERD_FLAGS.split()], stdout=log, stderr=subprocess.STDOUT,
        start_new_session=True,
    )  # fmt: skip
    engine = Engine(cli, env, process)
    deadline = time.monotonic() + 60
    while engine.run("info", check=False, timeout=30).returncode != 0:
        if process.poll() is not None or time.monotonic() > deadline:
            engine.stop()
            tail = Path(log.name).read_text()[-2000:]
            pytest.fail(f"dockerd {DOCKERD_FLAGS} did not start (log {log.name}):\n{tail}")
        time.sleep(0.5)
    return engine


# -- the base image ---------------------------------------------------------------------------------------------


def base_image(engine: Engine) -> str:
    """The tag of the local stand-in for python:3.11-slim-bookworm, made with debootstrap once per recipe."""
    recipe = f"bookworm minbase {BASE_PACKAGES} {DEBIAN_MIRROR}".encode()
    ca = HOST_CA_BUNDLE.read_bytes() if HOST_CA_BUNDLE.is_file() else b""
    tag = f"scott-test/python:3.11-bookworm-{hashlib.sha256(recipe + ca).hexdigest()[:12]}"
    if engine.has_image(tag):
        return tag
    debootstrap = shutil.which("debootstrap")
    if debootstrap is None:
        _skip_or_fail("debootstrap is not installed (apt-get install debootstrap)", ci_installs_it=True)
    if os.geteuid() != 0:
        pytest.skip(f"making the base image {tag} with debootstrap needs root")
    with tempfile.TemporaryDirectory(prefix="scott-base-", dir="/var/tmp") as tmp:
        root = Path(tmp) / "root"
        argv = [debootstrap, "--variant=minbase", f"--include={BASE_PACKAGES}", "bookworm", str(root), DEBIAN_MIRROR]
        engine.exec(argv, timeout=900)
        if ca:
            (root / "etc/ssl/certs/ca-certificates.crt").write_bytes(ca)
        for junk in ("var/cache/apt/archives", "var/lib/apt/lists"):  # what python:3.11-slim leaves out too
            for path in (root / junk).glob("*"):
                if path.is_file():
                    path.unlink()
        tar = subprocess.Popen(["tar", "-C", str(root), "-c", "."], stdout=subprocess.PIPE)
        changes = [
            "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            # pip in a venv trusts certifi's bundle, not the system's: point it at the system's.
            f"ENV PIP_CERT={HOST_CA_BUNDLE} SSL_CERT_FILE={HOST_CA_BUNDLE}",
            'CMD ["python3"]',
        ]
        argv = ["import", *(a for c in changes for a in ("--change", c)), "-", tag]
        engine.run(*argv, stdin=tar.stdout, timeout=300)
        assert tar.wait(timeout=60) == 0
    return tag


# -- the torch index -------------------------------------------------------------------------------------------


def dockerfile_arg(name: str) -> str:
    """The default of a global ARG of the Dockerfile."""
    match = re.search(rf"^ARG {name}=(\S+)", (ROOT / "Dockerfile").read_text(), flags=re.MULTILINE)
    assert match, f"the Dockerfile declares no ARG {name}"
    return match.group(1)


@contextlib.contextmanager
def torch_index(python: str = sys.executable) -> Iterator[str]:
    """A PEP 503 index URL serving the CPU torch of the Dockerfile's TORCH_VERSION and its dependencies.

    $SCOTT_TEST_TORCH_INDEX_URL if set; else the CPU wheel in pip's find-links (as on CI machines, where the
    torch index itself is out of reach), served with the dependencies pip downloads; else the Dockerfile's default.
    """
    if os.environ.get("SCOTT_TEST_TORCH_INDEX_URL"):
        yield os.environ["SCOTT_TEST_TORCH_INDEX_URL"]
        return
    spec = f"torch=={dockerfile_arg('TORCH_VERSION')}"
    with tempfile.TemporaryDirectory(prefix="scott-torch-index-") as tmp:
        wheels = Path(tmp) / "wheels"
        pip = [python, "-m", "pip", "download", "-q", "--only-binary", ":all:", "-d", str(wheels)]
        local = subprocess.run([*pip, "--no-index", "--no-deps", spec], capture_output=True, text=True, timeout=300)
        if local.returncode != 0 or not any("+cpu" in p.name for p in wheels.glob("torch-*.whl")):
            yield dockerfile_arg("TORCH_INDEX_URL")
            return
        subprocess.run([*pip, spec], check=True, capture_output=True, timeout=600)  # torch's dependencies
        simple = Path(tmp) / "simple"
        for wheel in list(wheels.glob("*.whl")):
            project = simple / re.sub(r"[-_.]+", "-", wheel.name.split("-")[0]).lower()
            project.mkdir(parents=True, exist_ok=True)
            wheel.rename(project / wheel.name)
        with serve_directory(Path(tmp)) as url:
            yield f"{url}/simple/"


@contextlib.contextmanager
def serve_directory(root: Path) -> Iterator[str]:
    """http://127.0.0.1:<port> serving root (directory listings are what pip reads as index pages)."""

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *args, **kwargs) -> None:
            super().__init__(*args, directory=str(root), **kwargs)

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Quiet)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


# -- Prometheus ----------------------------------------------------------------------------------------------


def prometheus_image(engine: Engine, base: str) -> str:
    """The tag of Prometheus from Debian's package (tests/docker/prometheus), built once per base and recipe."""
    folder = ROOT / "tests/docker/prometheus"
    digest = hashlib.sha256(base.encode() + (folder / "Dockerfile").read_bytes()).hexdigest()[:12]
    tag = f"scott-test/prometheus:debian-{digest}"
    if not engine.has_image(tag):
        engine.run("build", "--network", "host", "--build-arg", f"BASE_IMAGE={base}", "-t", tag, str(folder),
                   timeout=900)  # fmt: skip
    return tag
