"""Run an ASGI app with uvicorn on a free local port in a background thread, for tests (httpx: a dev dependency)."""

from __future__ import annotations

import socket
import threading
import time
from types import TracebackType

import httpx
import uvicorn
from fastapi import FastAPI

from server.app import uvicorn_config


class BackgroundServer:
    """`with BackgroundServer(app) as server: httpx.get(server.url + "/healthz")`; waits for /readyz if asked."""

    def __init__(self, app: FastAPI, wait_ready: bool = True, ready_timeout_s: float = 120.0) -> None:
        self.app, self.wait_ready, self.ready_timeout_s = app, wait_ready, ready_timeout_s
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind(("127.0.0.1", 0))
        self.port = self._sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        # the server's own uvicorn config (its HTTP protocol and limits), as `scott serve` runs it
        config = uvicorn_config(app, log_level="warning", lifespan="on", timeout_graceful_shutdown=30)
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, kwargs={"sockets": [self._sock]}, daemon=True)

    def __enter__(self) -> BackgroundServer:
        self._thread.start()
        deadline = time.monotonic() + self.ready_timeout_s
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.01)
        if self.wait_ready:
            self._await_ready(deadline)
        return self

    def _await_ready(self, deadline: float) -> None:
        with httpx.Client(base_url=self.url, timeout=5.0) as client:
            while time.monotonic() < deadline:
                response = client.get("/readyz")
                if response.status_code == 200:
                    return
                if response.json().get("status") == "failed":
                    raise RuntimeError(f"model failed to load: {response.json().get('error')}")
                time.sleep(0.02)
        raise TimeoutError(f"server not ready after {self.ready_timeout_s}s")

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.stop()

    def stop(self) -> None:
        self._server.should_exit = True
        self._thread.join(60)
        self._sock.close()
