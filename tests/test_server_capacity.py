"""Over capacity on the real server: 429 with Retry-After, 504 past the deadline, disconnected clients dropped.

The real tiny pipeline runs behind a gate the test can close (conftest's gated_pipeline), so the worker is
provably busy while the queue fills; nothing about the generation itself is faked.
"""

from __future__ import annotations

import asyncio
import json
import socket
import threading
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from server.app import create_app
from server.settings import ServerSettings
from tests.support.background_server import BackgroundServer
from tests.support.waiting import wait_until


@pytest.fixture(scope="module")
def gated(gated_pipeline):
    return gated_pipeline


@pytest.fixture(scope="module")
def server(gated):
    settings = ServerSettings(max_batch_size=8, max_wait_ms=1, max_queue=8, request_timeout_s=20)
    with BackgroundServer(create_app(settings, pipeline=gated)) as server:
        yield server
    gated.gate.set()


def metric(url: str, name: str) -> float:
    for line in httpx.get(url + "/metrics").text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    raise AssertionError(f"{name} missing")


def refuses_connections(port: int) -> bool:
    """The listener is closed: uvicorn's shutdown has begun."""
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    except ConnectionRefusedError:
        return True
    return False


def hold_worker(server: BackgroundServer, gated, n: int = 1) -> threading.Thread:
    """Close the gate and send a request whose batch the worker then holds; returns its thread."""
    gated.close()
    results: list[httpx.Response] = []
    thread = threading.Thread(
        target=lambda: results.append(
            httpx.post(server.url + "/generate", json={"prompt": "occupant", "num_images": n, "seed": 1}, timeout=60)
        )
    )
    thread.results = results  # type: ignore[attr-defined]
    thread.start()
    assert gated.holding.wait(10), "the worker never picked up the occupant"
    return thread


def release(gated, occupant: threading.Thread) -> httpx.Response:
    gated.gate.set()
    occupant.join(60)
    response = occupant.results[0]  # type: ignore[attr-defined]
    assert response.status_code == 200, response.text
    return response


def test_a_full_queue_answers_429_with_retry_after_and_others_still_run(server, gated) -> None:
    url = server.url
    occupant = hold_worker(server, gated)

    async def flood() -> list[httpx.Response]:
        async with httpx.AsyncClient(base_url=url, timeout=60) as client:
            queued = asyncio.ensure_future(
                client.post("/generate", json={"prompt": "fits", "num_images": 8, "steps": 1, "width": 32})
            )
            while "scott_queue_depth 8.0" not in (await client.get("/metrics")).text:
                await asyncio.sleep(0.01)  # until the 8 images of `queued` fill max_queue
            extra = [client.post("/generate", json={"prompt": f"extra {i}", "steps": 1}) for i in range(5)]
            rejected = await asyncio.gather(*extra)
            gated.gate.set()
            return [await queued, *rejected]

    queued, *rejected = asyncio.run(flood())
    for response in rejected:
        assert response.status_code == 429
        assert int(response.headers["Retry-After"]) >= 1
        assert response.json()["error"]["type"] == "queue_full"
    assert queued.status_code == 200 and len(queued.json()["images"]) == 8
    release(gated, occupant)
    assert metric(url, 'scott_rejections_total{reason="queue_full"}') == 5
    after = httpx.post(url + "/generate", json={"prompt": "after the flood", "steps": 1}, timeout=60)
    assert after.status_code == 200


def test_a_request_past_its_deadline_gets_504_and_is_never_generated(server, gated) -> None:
    url = server.url
    before = metric(url, "scott_images_generated_total")
    occupant = hold_worker(server, gated)
    late = httpx.post(url + "/generate", json={"prompt": "late", "timeout_ms": 200, "width": 32}, timeout=60)
    assert late.status_code == 504
    assert late.json()["error"]["type"] == "timeout"
    assert metric(url, "scott_queue_depth") == 0  # dropped from the queue at once, not when the worker looks
    release(gated, occupant)
    assert metric(url, "scott_images_generated_total") == before + 1  # the occupant only
    assert metric(url, 'scott_dropped_jobs_total{reason="timeout"}') == 1
    assert metric(url, 'scott_rejections_total{reason="timeout"}') == 1


def test_a_disconnected_client_is_dropped_before_it_costs_compute(server, gated) -> None:
    url = server.url
    before = metric(url, "scott_images_generated_total")
    occupant = hold_worker(server, gated)
    body = json.dumps({"prompt": "impatient", "num_images": 4, "width": 32}).encode()
    head = f"POST /generate HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\nContent-Length: {len(body)}"
    with socket.create_connection(("127.0.0.1", server.port)) as sock:
        sock.sendall(head.encode() + b"\r\n\r\n" + body)
        wait_until(lambda: metric(url, "scott_queue_depth") == 4, 10, "the 4 images admitted and waiting")
    # The client has closed its connection.
    wait_until(lambda: metric(url, 'scott_dropped_jobs_total{reason="disconnected"}') == 1, 10, "the job dropped")
    assert metric(url, "scott_queue_depth") == 0
    release(gated, occupant)
    # A wrongly kept job would run next: once the worker waits on an empty queue, whatever it took has run.
    wait_until(lambda: server.app.state.service.batcher.idle, 10, "the worker idle on an empty queue")
    assert metric(url, "scott_images_generated_total") == before + 1
    assert metric(url, 'scott_rejections_total{reason="disconnected"}') == 1


A1111_8X8 = {"prompt": "many", "batch_size": 8, "n_iter": 8, "steps": 1, "width": 32, "height": 32}


def test_an_a1111_request_is_admitted_whole_or_refused_before_any_work(gated) -> None:
    # Room for one request of 8 x 8 images: of 6 sent at once while the worker is held, 5 are refused at once.
    settings = ServerSettings(max_batch_size=8, max_wait_ms=1, max_queue=64, request_timeout_s=60)
    with BackgroundServer(create_app(settings, pipeline=gated)) as running, ThreadPoolExecutor(6) as pool:
        url = running.url
        before = metric(url, "scott_images_generated_total")
        occupant = hold_worker(running, gated)
        sent = [
            pool.submit(httpx.post, url + "/sdapi/v1/txt2img", json={**A1111_8X8, "seed": 100 * i}, timeout=120)
            for i in range(6)
        ]
        wait_until(lambda: sum(f.done() for f in sent) == 5, 30, "five of six refused while the worker is held")
        for response in [f.result() for f in sent if f.done()]:
            assert response.status_code == 429 and response.json()["error"]["type"] == "queue_full", response.text
            assert int(response.headers["Retry-After"]) >= 1
        assert metric(url, "scott_queue_depth") == 64  # the one admitted, whole
        release(gated, occupant)
        (admitted,) = [r for r in (f.result(timeout=120) for f in sent) if r.status_code != 429]
        assert admitted.status_code == 200, admitted.text
        assert len(admitted.json()["images"]) == 64
        # Every image made was delivered: the occupant's and the admitted request's, nothing for the refused.
        assert metric(url, "scott_images_generated_total") == before + 1 + 64
        assert metric(url, 'scott_rejections_total{reason="queue_full"}') == 5


def test_more_images_than_the_queue_ever_holds_is_a_422_naming_n_iter_and_the_limit(server) -> None:
    before = metric(server.url, "scott_images_generated_total")
    response = httpx.post(server.url + "/sdapi/v1/txt2img", json={**A1111_8X8, "n_iter": 2}, timeout=60)
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["field"] == "n_iter" and "8 x 2 = 16 images" in error["message"], error
    assert "at most 8" in error["message"] and "max_queue" in error["message"], error
    fits = httpx.post(server.url + "/sdapi/v1/txt2img", json={**A1111_8X8, "n_iter": 1}, timeout=60)
    assert fits.status_code == 200 and len(fits.json()["images"]) == 8
    assert metric(server.url, "scott_images_generated_total") == before + 8


def test_shutdown_finishes_admitted_requests_then_stops_the_worker(gated, tiny_pipeline) -> None:
    settings = ServerSettings(max_batch_size=2, max_wait_ms=1, max_queue=8)
    app = create_app(settings, pipeline=gated)
    server = BackgroundServer(app).__enter__()
    occupant = hold_worker(server, gated)
    queued: list[httpx.Response] = []
    waiting = threading.Thread(
        target=lambda: queued.append(httpx.post(server.url + "/generate", json={"prompt": "queued"}, timeout=60))
    )
    waiting.start()
    wait_until(lambda: app.state.service.batcher.depth == 1, 10, "the second request queued")
    stopper = threading.Thread(target=server.stop)
    stopper.start()
    wait_until(lambda: refuses_connections(server.port), 10, "uvicorn's shutdown to close the listener")
    assert occupant.is_alive() and waiting.is_alive(), "shutdown began with both requests in flight"
    release(gated, occupant)
    waiting.join(60)
    stopper.join(60)
    assert queued[0].status_code == 200
    service = app.state.service
    assert service.state == "stopping" and service.worker is not None
    assert service.worker.stop(timeout=0)  # already stopped: joining its thread takes no time
