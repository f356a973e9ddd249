"""Graceful shutdown: on SIGTERM readiness fails, requests are served for drain_seconds, then new ones get 503
while the admitted ones finish, and `scott serve` exits 0.

The in-process tests hold the inference worker at a gate (GatedPipeline) to pin down each phase; they call
DrainingServer.handle_exit, the method uvicorn installs as the SIGTERM handler (signals only reach the main
thread). The last test sends a real SIGTERM to a real `scott serve` process.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from loadtests.server_process import free_port
from server.app import DrainingServer, build_server, create_app
from server.settings import ServerSettings
from tests.support.waiting import wait_until

SMALL = {"steps": 1, "width": 32, "height": 32}  # the tiny model's cheapest image


@dataclass
class Running:
    url: str
    server: DrainingServer
    thread: threading.Thread

    def sigterm(self) -> None:
        self.server.handle_exit(signal.SIGTERM, None)


@contextmanager
def draining_server(settings: ServerSettings, pipeline) -> Iterator[Running]:
    """The production server class (build_server) on a free port, in a thread; does not wait for readiness."""
    app = create_app(settings, pipeline)
    server = build_server(app)
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    wait_until(lambda: server.started, 30, "uvicorn to start")
    try:
        yield Running(f"http://127.0.0.1:{sock.getsockname()[1]}", server, thread)
    finally:
        server.should_exit = True
        thread.join(30)
        sock.close()


def readiness(client: httpx.Client) -> str:
    return client.get("/readyz").json()["status"]


def generate(url: str, **body: object) -> httpx.Response:
    return httpx.post(url + "/generate", json={"prompt": "drain", **SMALL, **body}, timeout=60)


def assert_images(future: Future[httpx.Response], count: int) -> None:
    response = future.result(timeout=60)
    assert response.status_code == 200, response.text
    assert len(response.json()["images"]) == count


def test_sigterm_fails_readiness_serves_for_the_drain_delay_then_refuses_new_work_and_finishes_the_rest(
    gated_pipeline,
) -> None:
    settings = ServerSettings(drain_seconds=1.5, log_level="warning")
    with (
        draining_server(settings, gated_pipeline) as running,
        httpx.Client(base_url=running.url) as client,
        ThreadPoolExecutor(4) as pool,
    ):
        service = running.server.service
        wait_until(lambda: readiness(client) == "ready", 60, "/readyz to pass")
        gated_pipeline.close()
        running_job = pool.submit(generate, running.url)  # taken by the worker, held at the gate
        assert gated_pipeline.holding.wait(30)
        queued_job = pool.submit(generate, running.url, num_images=2)
        wait_until(lambda: service.batcher.depth == 2, 10, "the second request queued")

        running.sigterm()
        wait_until(lambda: client.get("/readyz").status_code == 503, 5, "readiness to fail after SIGTERM")
        assert client.get("/readyz").json()["status"] == "draining"
        ready = client.get("/v2/health/ready")
        assert ready.status_code == 503 and ready.json() == {"ready": False}
        assert client.get("/healthz").status_code == 200  # live: an orchestrator must not kill a draining server
        assert "scott_ready 0.0" in client.get("/metrics").text
        during_delay = pool.submit(generate, running.url)  # the load balancer may still route here: served
        wait_until(lambda: service.batcher.depth == 3, 10, "the request sent in the drain delay admitted")

        wait_until(lambda: readiness(client) == "stopping", 10, "the end of the drain delay")
        late = client.post("/generate", json={"prompt": "too late", **SMALL})
        assert late.status_code == 503 and late.headers["Retry-After"] == "1"
        assert late.json()["error"]["type"] == "shutting_down"
        assert "shutting down" in late.json()["error"]["message"]
        openai = client.post("/v1/images/generations", json={"prompt": "too late"})
        assert openai.status_code == 503 and openai.json()["error"]["type"] == "shutting_down"
        assert 'scott_rejections_total{reason="shutting_down"} 2.0' in client.get("/metrics").text
        assert not running.server.should_exit  # the listener stays open while admitted work runs

        gated_pipeline.gate.set()
        assert_images(running_job, 1)
        assert_images(queued_job, 2)
        assert_images(during_delay, 1)
        running.thread.join(15)
        assert not running.thread.is_alive(), "the server did not exit after the drain"


def test_an_admitted_a1111_request_of_many_batches_finishes_after_sigterm(gated_pipeline) -> None:
    settings = ServerSettings(max_batch_size=8, log_level="warning")
    body = {"prompt": "drain", **SMALL, "batch_size": 8, "n_iter": 8}
    with (
        draining_server(settings, gated_pipeline) as running,
        httpx.Client(base_url=running.url) as client,
        ThreadPoolExecutor(1) as pool,
    ):
        wait_until(lambda: readiness(client) == "ready", 60, "/readyz to pass")
        gated_pipeline.close()
        many = pool.submit(httpx.post, running.url + "/sdapi/v1/txt2img", json=body, timeout=60)
        assert gated_pipeline.holding.wait(30)  # its first batch of 8 runs; 56 images wait in the queue
        running.sigterm()
        wait_until(lambda: readiness(client) == "stopping", 10, "new requests refused")
        late = client.post("/sdapi/v1/txt2img", json={"prompt": "too late", **SMALL})
        assert late.status_code == 503 and late.json()["error"]["type"] == "shutting_down"
        gated_pipeline.gate.set()
        response = many.result(timeout=60)
        assert response.status_code == 200, response.text
        assert len(response.json()["images"]) == 64
        running.thread.join(15)
        assert not running.thread.is_alive(), "the server did not exit after the drain"


def test_a_signal_while_loading_stops_without_ever_becoming_ready(gated_pipeline) -> None:
    gated_pipeline.close()  # the warm-up generation waits at the gate
    settings = ServerSettings(drain_seconds=5, drain_timeout_s=10, log_level="warning")
    with draining_server(settings, gated_pipeline) as running:
        service = running.server.service
        assert gated_pipeline.holding.wait(30)
        running.sigterm()
        wait_until(lambda: service.state == "stopping", 5, "shutdown to begin")
        gated_pipeline.gate.set()  # the load finishes after shutdown began: it must not start serving
        running.thread.join(15)  # no drain delay: nothing was being served
        assert not running.thread.is_alive()
        assert service.state == "stopping" and service.worker is None
        assert b"scott_ready 0.0" in service.metrics.render()


def test_a_stuck_batch_does_not_hold_shutdown_past_the_drain_timeout(gated_pipeline) -> None:
    settings = ServerSettings(drain_timeout_s=0.5, log_level="critical")
    with draining_server(settings, gated_pipeline) as running, ThreadPoolExecutor(1) as pool:
        wait_until(lambda: httpx.get(running.url + "/readyz").status_code == 200, 60, "/readyz to pass")
        gated_pipeline.close()
        stuck = pool.submit(generate, running.url)
        assert gated_pipeline.holding.wait(30)
        start = time.monotonic()
        running.sigterm()
        running.thread.join(15)
        assert not running.thread.is_alive()
        # drain_timeout_s for the request, as long again for uvicorn's graceful wait, then the worker join
        assert time.monotonic() - start < 8
        # Never a hang: the handler still waits at the gate when uvicorn's graceful wait ends, so uvicorn cancels it
        # and, no response having started, answers its own 500 before its event loop ends.
        response = stuck.result(timeout=10)
        assert (response.status_code, response.text) == (500, "Internal Server Error")
        gated_pipeline.gate.set()


# -- the real process -------------------------------------------------------------------------------


def test_scott_serve_drains_on_sigterm_and_exits_0(tiny_model_dir: Path, tmp_path: Path) -> None:
    port, drain_s = free_port(), 1.0
    url = f"http://127.0.0.1:{port}"
    env = {**os.environ, "SCOTT_DRAIN_SECONDS": str(drain_s), "SCOTT_WARMUP": "false", "SCOTT_LOG_LEVEL": "warning"}
    log_path = tmp_path / "serve.log"
    command = [sys.executable, "-m", "server.cli", "serve", "--model", str(tiny_model_dir), "--port", str(port)]
    with log_path.open("wb") as log, ThreadPoolExecutor(8) as pool:
        process = subprocess.Popen(
            [*command, "--device", "cpu", "--max-batch-size", "2"], env=env, stdout=log, stderr=log
        )
        try:
            _drain_scenario(process, url, pool, drain_s)
        except BaseException:
            process.kill()
            process.wait()
            print(log_path.read_text())
            raise


def _drain_scenario(process: subprocess.Popen, url: str, pool: ThreadPoolExecutor, drain_s: float) -> None:
    def ready() -> bool:
        assert process.poll() is None, "scott serve exited during startup"
        try:
            return httpx.get(url + "/readyz").status_code == 200
        except httpx.TransportError:
            return False

    wait_until(ready, 120, "scott serve to become ready")
    early = [pool.submit(generate, url, num_images=2) for _ in range(3)]

    def queued_or_done() -> bool:
        return all(f.done() for f in early) or "scott_queue_depth 0.0" not in metrics(url)

    wait_until(queued_or_done, 10, "the requests queued or done")
    in_flight = sum(not f.done() for f in early)
    process.send_signal(signal.SIGTERM)
    signalled = time.monotonic()

    phases: list[tuple[str, float]] = []  # (readiness status or "refused", seconds after SIGTERM)
    after_delay: list[str] = []  # what a new request got once the drain delay was over
    during_delay: list[Future[httpx.Response]] = []
    with httpx.Client(base_url=url) as client:
        while True:
            time.sleep(0.02)
            try:
                response = client.get("/readyz")
            except httpx.TransportError:
                phases.append(("refused", time.monotonic() - signalled))
                break
            status = response.json()["status"]
            if status == "ready":
                assert time.monotonic() - signalled < 5, "readiness still passing 5 s after SIGTERM"
                continue
            assert response.status_code == 503
            if not phases or phases[-1][0] != status:
                phases.append((status, time.monotonic() - signalled))
                if status == "draining":
                    assert client.get("/healthz").status_code == 200
                    assert client.get("/v2/health/ready").status_code == 503
                    during_delay = [pool.submit(generate, url, num_images=2) for _ in range(2)]
            if status == "stopping" and not after_delay:
                try:
                    late = client.post("/generate", json={"prompt": "late", **SMALL})
                    assert late.status_code == 503 and late.headers["Retry-After"] == "1", late.text
                    assert late.json()["error"]["type"] == "shutting_down"
                    after_delay.append("503")
                except httpx.TransportError:
                    after_delay.append("refused")
    with pytest.raises(httpx.ConnectError):  # the listener is closed
        httpx.post(url + "/generate", json={"prompt": "after exit", **SMALL})
    assert process.wait(timeout=30) == 0
    exited = time.monotonic() - signalled

    for future in early + during_delay:
        assert_images(future, 2)
    names = [name for name, _ in phases]
    assert names[0] == "draining" and names[-1] == "refused", phases
    delay_end = next((at for name, at in phases if name != "draining"), exited)
    assert delay_end >= drain_s - 0.1, f"readiness failed but served only {delay_end:.2f}s: {phases}"
    assert len(during_delay) == 2
    print(
        f"in flight at SIGTERM: {in_flight}/3; phases {phases}; after the delay: {after_delay or ['refused']}; "
        f"exit 0 after {exited:.2f}s"
    )


def metrics(url: str) -> str:
    return httpx.get(url + "/metrics").text
