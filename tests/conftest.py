"""Session fixtures for the test suite: the tiny model folder, its pipeline, live servers of it and the shipped one."""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest

from scott.models import build_model, save_model
from scott.pipeline import GenerationOutput, ImageRequest, TextToImagePipeline


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A diffusers-format folder of the tiny preset (random weights, seed 0), built once per session."""
    return save_model(build_model("tiny", seed=0), tmp_path_factory.mktemp("models") / "scott-tiny")


@pytest.fixture(scope="session")
def tiny_pipeline(tiny_model_dir: Path):
    """The tiny model loaded on the CPU with the torch backend, once per session."""
    from engines.load_options import LoadOptions
    from engines.loader import load_pipeline

    return load_pipeline(tiny_model_dir, LoadOptions(backend="torch", device="cpu"))


@pytest.fixture(scope="session")
def live_server(tiny_model_dir: Path) -> Iterator:
    """The real app (loading the tiny model itself) served by uvicorn on a free port; yields a BackgroundServer.

    On torch: this process never loads OpenVINO (the Makefile runs the OpenVINO tests in their own process). The
    CPU default, openvino, is served over HTTP in tests/test_openvino_backend.py and by the `scott serve`
    subprocesses of tests/test_server_shutdown.py and the load tests.
    """
    from server.app import create_app
    from server.settings import ServerSettings
    from tests.support.background_server import BackgroundServer

    settings = ServerSettings(model_dir=tiny_model_dir, backend="torch", device="cpu", max_batch_size=8, max_wait_ms=20)
    with BackgroundServer(create_app(settings)) as server:
        yield server


SHIPPED_MODEL = Path(__file__).resolve().parents[1] / "models" / "scott-tiny"  # committed, with its serving.json


@pytest.fixture(scope="session")
def shipped_server() -> Iterator:
    """The real app serving the committed model (models/scott-tiny, its serving.json included) on torch."""
    from server.app import create_app
    from server.settings import ServerSettings
    from tests.support.background_server import BackgroundServer

    if not (SHIPPED_MODEL / "model_index.json").is_file():
        pytest.skip(f"no committed model at {SHIPPED_MODEL} (make embedded-model)")
    settings = ServerSettings(model_dir=SHIPPED_MODEL, backend="torch", device="cpu", max_batch_size=2)
    with BackgroundServer(create_app(settings)) as server:
        yield server


class GatedPipeline:
    """The real pipeline behind a gate: with the gate closed, generate() waits and sets `holding`.

    Lets a test hold the inference worker (or the warm-up) for as long as it needs, deterministically.
    """

    def __init__(self, pipeline: TextToImagePipeline) -> None:
        self._pipeline = pipeline
        self.info, self.backend = pipeline.info, pipeline.backend
        self.gate, self.holding = threading.Event(), threading.Event()
        self.gate.set()

    def generate(self, requests: Sequence[ImageRequest]) -> GenerationOutput:
        if not self.gate.is_set():
            self.holding.set()
            self.gate.wait(timeout=60)
        return self._pipeline.generate(requests)

    def close(self) -> None:
        self.gate.clear()
        self.holding.clear()


@pytest.fixture(scope="module")
def gated_pipeline(tiny_pipeline) -> Iterator[GatedPipeline]:
    gated = GatedPipeline(tiny_pipeline)
    yield gated
    gated.gate.set()
