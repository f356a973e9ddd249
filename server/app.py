"""The app factory: routes, error format, middleware, and a lifespan that loads, warms up and drains the model."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from scott.pipeline import TextToImagePipeline
from server import api, health, openai_api
from server.errors import install_error_handlers
from server.metrics import ENDPOINTS, ServerMetrics
from server.middleware import BodySizeLimit, JsonBodies, RequestTimer
from server.service import GenerationService
from server.settings import ServerSettings


def create_app(settings: ServerSettings | None = None, pipeline: TextToImagePipeline | None = None) -> FastAPI:
    """A server for one model. Without `pipeline` it loads settings.model_dir on startup.

    Startup returns at once and loads in the background, so /healthz answers while /readyz stays 503
    until the model is loaded and one warm-up generation has run.
    """
    settings = settings or ServerSettings()
    metrics = ServerMetrics()
    service = GenerationService(settings, metrics, pipeline)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        loader = threading.Thread(target=service.start, name="scott-loader", daemon=True)
        loader.start()
        try:
            yield
        finally:
            await asyncio.to_thread(service.stop)
            await asyncio.to_thread(loader.join, settings.drain_timeout_s)

    app = FastAPI(title="SCott Serve", version="0.1.0", lifespan=lifespan)
    app.state.service = service
    app.state.settings = settings
    install_error_handlers(app, metrics.reject)
    app.include_router(api.router)
    app.include_router(openai_api.router)
    app.include_router(health.router)
    app.add_middleware(JsonBodies)
    app.add_middleware(BodySizeLimit, max_bytes=settings.max_body_bytes, on_reject=metrics.reject)
    app.add_middleware(RequestTimer, observe=metrics.observe_request, paths=ENDPOINTS)  # outermost: sees 413s too
    return app
