"""The CPU image and the compose stack on a real Docker engine: what a user does, built from the real Dockerfile.

Where a Docker engine can be had (one answers, or root on Linux starts Debian's docker.io; else this skips naming
what is missing): `docker build --target cpu .` with the registry images swapped through build arguments for local
stand-ins (tests/support/docker_engine.py), then the image run as `docker run` runs it (health check, a real PNG, the
cache volume, SIGTERM's drain, a second start on the same volume), then `docker-compose -f docker-compose.yml -f
docker-compose.cpu.yml up` with Prometheus scraping the server. The numbers (build, size, starts) print at the end.
"""

from __future__ import annotations

import base64
import contextlib
import io
import json
import os
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import httpx
import pytest

from engines.load_options import DEFAULT_MAX_BATCH_SIZE
from loadtests.server_process import free_port
from tests.support.deploy import ROOT, compose_cli
from tests.support.docker_engine import Engine, base_image, prometheus_image, start_engine, torch_index
from tests.support.waiting import wait_until

pytestmark = [
    pytest.mark.docker,
    pytest.mark.slow,  # builds the image (minutes), then starts it three times
    pytest.mark.timeout(2400),  # a cold build downloads the package's dependencies
]

IMAGE = "scott-serve:0.1.0-cpu"  # what `make image-cpu` and docker-compose.cpu.yml name it
CACHE_DIR = "/var/cache/scott"
USER_UID = 10001  # the Dockerfile's USER
READY_TIMEOUT_S = 240.0  # the image's HEALTHCHECK start period is 2 min; compiling on 2 cores takes ~70 s
STOP_GRACE_S = 60  # docker-compose.cpu.yml's stop_grace_period
# On vfs every layer and every container is a full copy: a changed tree's build (about 4 GB) and up to three
# containers (1.9 GB each for the server) beside what the engine keeps from the last run.
MIN_FREE_GB = 6.0
COMPOSE_FREE_GB = 3.0  # the stack's two containers (server 1.9 GB, Prometheus 0.7 GB)
COMPOSE_FILES = ("docker-compose.yml", "docker-compose.cpu.yml", "tests/docker/compose.test.yml")
NUMBERS: dict[str, str] = {}  # reported at the end (see report_numbers)


@pytest.fixture(scope="module", autouse=True)
def report_numbers(request: pytest.FixtureRequest) -> Iterator[None]:
    yield
    if NUMBERS:
        reporter = request.config.pluginmanager.get_plugin("terminalreporter")
        capture = request.config.pluginmanager.get_plugin("capturemanager")
        line = "deploy image: " + ", ".join(f"{k} {v}" for k, v in NUMBERS.items())
        if reporter is not None and capture is not None:
            with capture.global_and_fixture_disabled():  # shown in `make test`'s -q output too
                reporter.write_line(line)


@pytest.fixture(scope="module")
def engine() -> Iterator[Engine]:
    engine = start_engine()
    yield engine
    # Earlier builds' images, untagged by this one, and their build cache: bounded disk over repeated runs (the
    # tagged images stay, so the next build reuses their layers).
    engine.run("image", "prune", "-f", check=False, timeout=600)
    engine.run("builder", "prune", "-f", check=False, timeout=600)
    engine.stop()


@pytest.fixture(scope="module")
def base(engine: Engine) -> str:
    start = time.monotonic()
    tag = base_image(engine)
    NUMBERS["base image"] = f"{time.monotonic() - start:.0f} s"
    return tag


@pytest.fixture(scope="module")
def torch_url() -> Iterator[str]:
    with torch_index() as url:
        yield url


@pytest.fixture(scope="module")
def image(engine: Engine, base: str, torch_url: str) -> str:
    """`docker build --target cpu .` with the base image and torch index swapped in by build arguments."""
    engine.require_free_space(MIN_FREE_GB)
    start = time.monotonic()
    engine.run(
        "build", "--network", "host", "--target", "cpu", "--build-arg", f"PYTHON_IMAGE={base}",
        "--build-arg", f"TORCH_INDEX_URL={torch_url}", "-t", IMAGE, ".", timeout=1800,
    )  # fmt: skip
    NUMBERS["build"] = f"{time.monotonic() - start:.0f} s"
    engine.run("image", "prune", "-f", timeout=600)  # the previous build, untagged now: its disk before containers'
    size = int(engine.run("image", "inspect", "--format", "{{.Size}}", IMAGE).stdout)
    NUMBERS["image"] = f"{size / 1e9:.2f} GB"
    return IMAGE


# -- one container ---------------------------------------------------------------------------------------------


@dataclass
class Container:
    engine: Engine
    name: str
    port: int
    started: float = field(default_factory=time.monotonic)
    ready_s: float = 0.0  # seconds from the start to /readyz 200, once wait_healthy has seen it
    progress: list[str] = field(default_factory=list)  # /readyz's loading steps, as wait_healthy saw them

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def inspect(self) -> dict:
        return json.loads(self.engine.run("inspect", self.name).stdout)[0]

    def logs(self) -> str:
        result = self.engine.run("logs", self.name, check=False)
        return result.stdout + result.stderr

    def wait_healthy(self) -> tuple[float, float]:
        """(seconds to /readyz 200, seconds to Docker's health status `healthy`) since the start; the loading
        steps /readyz reported on the way go to self.progress."""
        ready_s = None
        deadline = self.started + READY_TIMEOUT_S
        while time.monotonic() < deadline:
            state = self.inspect()["State"]
            assert state["Running"], f"the container exited ({state['ExitCode']}):\n{self.logs()[-3000:]}"
            if ready_s is None:
                status, body = _readyz(self.url)
                assert body.get("status") != "failed", f"the model failed to load: {body}\n{self.logs()[-3000:]}"
                if body.get("progress") and body["progress"] not in self.progress:
                    self.progress.append(body["progress"])
                ready_s = time.monotonic() - self.started if status == 200 else None
            if state["Health"]["Status"] == "healthy":
                assert ready_s is not None, "healthy before /readyz answered 200 from the host"
                self.ready_s = ready_s
                return ready_s, time.monotonic() - self.started
            time.sleep(0.2)
        raise AssertionError(f"not healthy within {READY_TIMEOUT_S:.0f} s:\n{self.logs()[-3000:]}")

    def cache_files(self) -> dict[str, tuple[int, str]]:
        """Path -> (size, mtime) of every file in the cache volume, as the server's user sees them."""
        out = self.engine.run("exec", self.name, "find", CACHE_DIR, "-type", "f", "-printf", r"%P\t%s\t%T@\n").stdout
        rows = (line.split("\t") for line in out.splitlines())
        return {path: (int(size), mtime) for path, size, mtime in rows}


def _readyz(url: str) -> tuple[int, dict]:
    try:
        response = httpx.get(f"{url}/readyz", timeout=2)
        return response.status_code, response.json()
    except (httpx.HTTPError, ValueError):
        return 0, {}


def generate(url: str, **body: object) -> dict:
    response = httpx.post(f"{url}/generate", json={"prompt": "a red circle", "seed": 1, **body}, timeout=120)
    assert response.status_code == 200, response.text
    return response.json()


def server_metrics(url: str) -> dict[str, float]:
    """The server's own /metrics, sample name (with its labels) -> value."""
    values: dict[str, float] = {}
    for line in httpx.get(f"{url}/metrics", timeout=10).text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            values[name] = float(value)
    return values


@pytest.fixture(scope="module")
def network(engine: Engine) -> Iterator[str]:
    """A user-defined network: `-p` needs one where the engine runs without its default bridge."""
    name = f"scott-deploy-test-{os.getpid()}"
    engine.run("network", "create", name)
    yield name
    engine.run("network", "rm", name, check=False)


@pytest.fixture(scope="module")
def volume(engine: Engine) -> Iterator[str]:
    name = f"scott-deploy-test-cache-{os.getpid()}"
    engine.run("volume", "create", name)
    yield name
    engine.run("volume", "rm", "-f", name, check=False)


@pytest.fixture(scope="module")
def containers(engine: Engine, image: str, network: str, volume: str) -> Iterator[list[Container]]:
    """Containers started by run_container (removed after the module)."""
    started: list[Container] = []
    yield started
    for container in started:
        engine.run("rm", "-f", container.name, check=False)


def run_container(engine: Engine, image: str, network: str, volume: str, containers: list[Container]) -> Container:
    """`docker run -d -p PORT:8000 -v VOLUME:/var/cache/scott IMAGE`: the image's own entrypoint, user and health."""
    container = Container(engine, f"scott-deploy-test-{os.getpid()}-{len(containers)}", free_port())
    engine.run(
        "run", "-d", "--name", container.name, "--network", network, "-p", f"127.0.0.1:{container.port}:8000",
        "-v", f"{volume}:{CACHE_DIR}", image,
    )  # fmt: skip
    containers.append(container)
    return container


@pytest.fixture(scope="module")
def first(engine: Engine, image: str, network: str, volume: str, containers: list[Container]) -> Container:
    container = run_container(engine, image, network, volume, containers)
    ready_s, healthy_s = container.wait_healthy()
    NUMBERS["first start"] = f"ready {ready_s:.0f} s, healthy {healthy_s:.0f} s"
    return container


# -- the image -----------------------------------------------------------------------------------------------


def test_image_has_cpu_torch_on_the_base_python(engine: Engine, image: str, first: Container) -> None:
    # A bare torch requirement gives PyPI's CUDA build (GBs of CUDA wheels): the CPU index must have won.
    probe = "import sys, torch; print(sys.version_info[:2], torch.__version__, torch.version.cuda)"
    out = engine.run("exec", first.name, "python", "-c", probe).stdout
    assert out.split() == ["(3,", "11)", "2.13.0+cpu", "None"], out
    config = json.loads(engine.run("image", "inspect", image).stdout)[0]["Config"]
    assert config["User"] == f"{USER_UID}:{USER_UID}" and CACHE_DIR in config["Volumes"]


def test_first_start_is_healthy_and_serves_a_png_as_the_unprivileged_user(engine: Engine, first: Container) -> None:
    from PIL import Image, ImageStat

    health = first.inspect()["State"]["Health"]
    assert health["Status"] == "healthy" and ": 200" in health["Log"][-1]["Output"]
    status = engine.run("exec", first.name, "cat", "/proc/1/status").stdout
    uids = next(line.split()[1:] for line in status.splitlines() if line.startswith("Uid:"))
    assert uids == [str(USER_UID)] * 4, f"PID 1 (the server) runs as {uids}"
    body = generate(first.url, steps=2)
    png = base64.b64decode(body["images"][0]["b64_png"])
    assert png.startswith(b"\x89PNG\r\n\x1a\n")
    picture = Image.open(io.BytesIO(png))
    assert picture.format == "PNG" and picture.size == (body["width"], body["height"])
    assert max(ImageStat.Stat(picture.convert("RGB")).stddev) > 5, "a flat image: the model did not run"


def test_caches_go_to_the_volume_and_nothing_is_re_exported(first: Container) -> None:
    files = first.cache_files()
    blobs = [p for p in files if p.startswith("openvino/") and p.endswith(".blob")]
    assert blobs, f"no compiled OpenVINO blobs in {CACHE_DIR}: {sorted(files)}"
    # The ONNX export is baked into the image (models/scott-tiny/onnx): no start exports, the cache holds no other.
    assert not [p for p in files if p.startswith("onnx/")], sorted(files)
    assert not [step for step in first.progress if "export" in step], first.progress


def test_stop_drains_in_flight_requests_and_exits_zero(engine: Engine, first: Container) -> None:
    results: list[tuple[int, float]] = []
    per_request = 8

    def request() -> None:
        # 8 x 8 images at 4 steps, of the one size the embedded model serves (64, its serving.json): a second or
        # more of work, so some is still running at SIGTERM (3 x 4 images once all finished within 0.3 s), and
        # exactly the 64-image queue.
        body = {"prompt": "a blue square", "seed": 2, "steps": 4, "num_images": per_request, "width": 64, "height": 64}
        response = httpx.post(f"{first.url}/generate", json=body, timeout=120)
        results.append((response.status_code, time.monotonic()))

    generated_before = server_metrics(first.url)["scott_images_generated_total"]
    threads = [threading.Thread(target=request) for _ in range(8)]
    for thread in threads:
        thread.start()

    def all_admitted() -> bool:
        """Every request is admitted before SIGTERM (the image drains with drain_seconds 0: a later one gets 503).

        An admitted image is queued, generated, or in the one batch running (up to max_batch_size images, the
        image's default); while images are queued the worker is running a batch (none waits for company after a
        batch of one request)."""
        values = server_metrics(first.url)
        queued, generated = values["scott_queue_depth"], values["scott_images_generated_total"] - generated_before
        total = per_request * len(threads)
        return queued + generated >= total or (queued > 0 and queued + generated >= total - DEFAULT_MAX_BATCH_SIZE)

    wait_until(all_admitted, 60, "the server to have admitted all 8 requests", interval_s=0.02)
    stop_sent = time.monotonic()
    engine.run("stop", "-t", str(STOP_GRACE_S), first.name, timeout=STOP_GRACE_S + 30)
    stop_s = time.monotonic() - stop_sent
    for thread in threads:
        thread.join(timeout=30)
    state = first.inspect()["State"]
    NUMBERS["stop"] = f"{stop_s:.1f} s"
    assert state["ExitCode"] == 0 and not state["OOMKilled"], f"exit {state['ExitCode']}:\n{first.logs()[-3000:]}"
    assert stop_s < STOP_GRACE_S, "SIGKILL'd at the end of the grace period"
    assert [status for status, _ in results] == [200] * len(threads), results
    assert any(done > stop_sent for _, done in results), "every request ended before SIGTERM: nothing was drained"
    assert "draining" in first.logs()


def test_second_start_reuses_the_cache(
    engine: Engine, base: str, image: str, network: str, volume: str, containers: list[Container], first: Container
) -> None:
    if first.inspect()["State"]["Running"]:
        pytest.fail("the first container still runs: the stop test did not stop it")
    engine.run("rm", first.name)  # on vfs each container holds a full copy of the image
    # Listed from the small base image: the same find(1), without another copy of the server's image.
    listing = engine.run(
        "run", "--rm", "--network", "none", "-v", f"{volume}:{CACHE_DIR}", base, "find", CACHE_DIR,
        "-type", "f", "-printf", r"%P\t%s\t%T@\n",
    ).stdout  # fmt: skip
    before = {p: (int(s), m) for p, s, m in (line.split("\t") for line in listing.splitlines())}
    second = run_container(engine, image, network, volume, containers)
    ready_s, healthy_s = second.wait_healthy()
    NUMBERS["second start"] = f"ready {ready_s:.0f} s, healthy {healthy_s:.0f} s"
    # Reused, not rebuilt: OpenVINO writes a blob for every compilation it misses. Start-to-ready is reported, not
    # asserted: compiling this tiny model is a small part of its start (24 s both times, measured on 2 shared cores).
    assert second.cache_files() == before, "the second start rewrote or added cache files"
    assert not [step for step in second.progress if "export" in step], second.progress
    generate(second.url, steps=1)
    engine.run("stop", "-t", str(STOP_GRACE_S), second.name, timeout=STOP_GRACE_S + 30)
    engine.run("rm", second.name)  # its copy of the image's disk, before compose starts two more containers


# -- the compose stack ---------------------------------------------------------------------------------------------


def test_compose_stack_is_scraped_by_prometheus(engine: Engine, image: str, base: str) -> None:
    """`compose -f docker-compose.yml -f docker-compose.cpu.yml up` on the image built above (not rebuilt: on vfs a
    second build of a changed tree is another full copy of the runtime); Grafana is left out (no image here)."""
    ports = {"SCOTT_PUBLISH_PORT": free_port(), "PROMETHEUS_PUBLISH_PORT": free_port()}
    env = {**{k: str(v) for k, v in ports.items()}, "SCOTT_TEST_PROMETHEUS_IMAGE": prometheus_image(engine, base)}
    engine.require_free_space(COMPOSE_FREE_GB)
    compose = [*compose_cli(), "-p", f"scott-deploy-test-{os.getpid()}", *(a for f in COMPOSE_FILES for a in ("-f", f))]
    try:
        engine.exec([*compose, "up", "-d", "--no-build", "server-cpu", "prometheus"], env=env, timeout=600)
        server_id = engine.exec([*compose, "ps", "-q", "server-cpu"], env=env).stdout.strip()
        server = Container(engine, server_id, ports["SCOTT_PUBLISH_PORT"])
        server.wait_healthy()
        prometheus = f"http://127.0.0.1:{ports['PROMETHEUS_PUBLISH_PORT']}"
        up = wait_for(prometheus, 'up{job="scott-serve"}', lambda v: v == 1.0)
        assert up == 1.0
        requests = 'sum(scott_request_duration_seconds_count{endpoint="/generate"}) or vector(0)'
        before = query(prometheus, requests)
        generate(server.url, steps=1)
        after = wait_for(prometheus, requests, lambda v: v is not None and v > (before or 0))
        assert after >= (before or 0) + 1
        # compose's stop (tini as PID 1 with `init: true`, then the server's drain) ends in a clean exit too.
        stop = [*compose, "stop", "--timeout", str(STOP_GRACE_S), "server-cpu"]
        engine.exec(stop, env=env, timeout=STOP_GRACE_S + 30)
        state = server.inspect()["State"]
        assert not state["Running"] and state["ExitCode"] == 0, state
    except BaseException:
        with contextlib.suppress(Exception):  # the logs help; a failure to get them must not hide the error
            print(engine.exec([*compose, "logs", "--no-color", "--tail", "80"], env=env, check=False).stdout)
        raise
    finally:
        engine.exec([*compose, "down", "-v", "--timeout", str(STOP_GRACE_S)], env=env, check=False, timeout=300)


def query(prometheus: str, promql: str) -> float | None:
    """The one value of an instant query (None when it returns nothing or Prometheus does not answer yet)."""
    try:
        response = httpx.get(f"{prometheus}/api/v1/query", params={"query": promql}, timeout=5)
    except httpx.HTTPError:
        return None
    if response.status_code != 200:
        return None
    result = response.json()["data"]["result"]
    assert len(result) <= 1, result
    return float(result[0]["value"][1]) if result else None


def wait_for(prometheus: str, promql: str, ok, timeout_s: float = 90.0) -> float:
    """Poll an instant query until ok(value); Prometheus scrapes the server every 5 s."""
    deadline = time.monotonic() + timeout_s
    value = None
    while time.monotonic() < deadline:
        value = query(prometheus, promql)
        if ok(value):
            return value
        time.sleep(1)
    targets = httpx.get(f"{prometheus}/api/v1/targets", timeout=5).text[:2000]
    raise AssertionError(f"{promql} = {value} after {timeout_s:.0f} s; targets: {targets}")


def test_compose_override_swaps_only_the_prometheus_image() -> None:
    import yaml

    override = yaml.safe_load((ROOT / COMPOSE_FILES[-1]).read_text())["services"]
    assert override == {"prometheus": {"image": "${SCOTT_TEST_PROMETHEUS_IMAGE:?the test sets it}"}}
