"""Start a server as a child process, wait until it answers ready, stop it by its PID (SIGTERM, then SIGKILL);
read its batch totals from /metrics."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path
from types import TracebackType


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def readiness(url: str, timeout_s: float = 2.0) -> tuple[int, dict]:
    """(status, JSON body) of GET url; (0, {}) when nothing answers yet."""
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as response:
            return response.status, json.loads(response.read() or b"{}")
    except urllib.error.HTTPError as error:  # 503 while the model loads
        try:
            return error.code, json.loads(error.read() or b"{}")
        except ValueError:
            return error.code, {}
    except (OSError, ValueError):
        return 0, {}


def batch_totals(url: str) -> tuple[float, float] | None:
    """(sum, count) of scott_batch_size from url's /metrics, or None for a server without it."""
    try:
        with urllib.request.urlopen(url + "/metrics", timeout=5) as response:
            text = response.read().decode()
    except OSError:
        return None
    values = {}
    for line in text.splitlines():
        if line.startswith(("scott_batch_size_sum ", "scott_batch_size_count ")):
            name, value = line.split()[:2]
            values[name] = float(value)
    if len(values) != 2:
        return None
    return values["scott_batch_size_sum"], values["scott_batch_size_count"]


class ServerProcess:
    """`with ServerProcess(command, url) as server:` runs `command`, returns once GET url + ready_path is 200.

    Output goes to log_path (or is inherited). Only the child this object started is ever signalled.
    """

    def __init__(
        self,
        command: list[str],
        url: str,
        *,
        ready_path: str = "/readyz",
        ready_timeout_s: float = 300.0,
        stop_timeout_s: float = 30.0,
        log_path: Path | None = None,
        cwd: Path | None = None,
        env: dict[str, str] | None = None,
    ) -> None:
        self.command, self.url, self.ready_path = command, url, ready_path
        self.ready_timeout_s, self.stop_timeout_s = ready_timeout_s, stop_timeout_s
        self.log_path, self.cwd, self.env = log_path, cwd, env
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int | None:
        return None if self.process is None else self.process.pid

    def __enter__(self) -> ServerProcess:
        self.start()
        try:
            self.wait_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.stop()

    def start(self) -> None:
        log = None
        if self.log_path is not None:
            self.log_path.parent.mkdir(parents=True, exist_ok=True)
            log = self.log_path.open("wb")
        try:
            self.process = subprocess.Popen(
                self.command, cwd=self.cwd, env={**os.environ, **(self.env or {})}, stdout=log, stderr=log
            )
        finally:
            if log is not None:
                log.close()  # the child holds its own copy

    def wait_ready(self) -> None:
        assert self.process is not None, "start() first"
        deadline = time.monotonic() + self.ready_timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                code = self.process.returncode
                raise RuntimeError(f"server exited with code {code} before it was ready{self._log()}")
            status, body = readiness(self.url + self.ready_path)
            if status == 200:
                return
            if body.get("status") == "failed":
                raise RuntimeError(f"server failed to load its model: {body.get('error')}{self._log()}")
            time.sleep(0.2)
        raise TimeoutError(f"{self.url}{self.ready_path} not ready after {self.ready_timeout_s:.0f} s{self._log()}")

    def stop(self) -> int | None:
        """SIGTERM (the server drains and exits), SIGKILL after stop_timeout_s; the exit code."""
        if self.process is None or self.process.poll() is not None:
            return None if self.process is None else self.process.returncode
        self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(self.stop_timeout_s)
        except subprocess.TimeoutExpired:
            self.process.kill()
            return self.process.wait()

    def _log(self) -> str:
        if self.log_path is None or not self.log_path.exists():
            return ""
        tail = self.log_path.read_text(errors="replace")[-2000:]
        return f"; log {self.log_path}:\n{tail}"
