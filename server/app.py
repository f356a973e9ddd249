"""The app factory (routes, error format, middleware, a lifespan that loads and warms up the model) and
the uvicorn server that runs it in production, draining the service on SIGTERM before it stops listening."""

from __future__ import annotations

import asyncio
import contextlib
import copy
import logging
import math
import sys
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from types import FrameType
from typing import Any

import uvicorn
from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware
from fastapi.routing import APIRoute
from uvicorn.config import STARTUP_FAILURE

from engines.loader import memory_plan
from engines.memory_budget import MemoryBudgetError
from scott.pipeline import TextToImagePipeline
from server.auth import ApiKeys
from server.docs import app_with_docs
from server.errors import install_error_handlers
from server.metrics import ENDPOINTS, ServerMetrics
from server.middleware import AllowedHosts, BodySizeLimit, HeadAsGet, RequestTimer, RequireJson
from server.openapi import install_openapi
from server.protocol import limited_protocol
from server.routes import a1111, generate, health, openai_images, playground
from server.service import GenerationService
from server.settings import ServerSettings

log = logging.getLogger("uvicorn.error")  # uvicorn's own lifecycle messages go there too


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

    # No redirect from /generate/ to /generate: Starlette builds its absolute URL from the request's Host header.
    app = app_with_docs(title="SCott Serve", version="0.1.0", lifespan=lifespan, redirect_slashes=False)
    app.state.service = service
    app.state.settings = settings
    install_error_handlers(app, metrics.reject)
    keys = settings.api_key_values()
    install_openapi(app, service, keyed=bool(keys))
    routers = (generate.router, openai_images.router, a1111.router, health.router, playground.router)
    for router in routers:
        app.include_router(router)
    # The last added runs first: host, CORS (a preflight needs no key), key, content type, then the body is read;
    # the routes see a HEAD request as its GET.
    app.add_middleware(HeadAsGet)
    app.add_middleware(BodySizeLimit, max_bytes=settings.max_body_bytes, on_reject=metrics.reject)
    json_routes = [
        r.path for router in routers for r in router.routes if isinstance(r, APIRoute) and "POST" in r.methods
    ]
    app.add_middleware(RequireJson, paths=json_routes, on_reject=metrics.reject)
    if keys:
        app.add_middleware(ApiKeys, keys=keys, max_per_key=settings.max_concurrent_per_key, on_reject=metrics.reject)
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=["GET", "POST"],
            allow_headers=["Authorization", "Content-Type"],
            expose_headers=["Retry-After", "X-Seed", "X-Prompt-Truncated", "X-Batch-Sizes", "Server-Timing"],
            max_age=600,
        )
    if settings.allowed_hosts:
        app.add_middleware(AllowedHosts, allowed_hosts=settings.allowed_hosts, open_paths=health.PROBE_PATHS)
    app.add_middleware(RequestTimer, observe=metrics.observe_request, paths=ENDPOINTS)  # outermost: sees 413s too
    return app


class DrainingServer(uvicorn.Server):
    """uvicorn, except that the first SIGTERM or SIGINT drains the service before the listener closes.

    uvicorn alone stops accepting connections at once, and re-raises the signal after its shutdown, so
    the process dies by it. Here the first signal starts GenerationService.drain (readiness fails; requests
    are served for drain_seconds, then refused with 503 while the admitted ones finish); then uvicorn's
    own shutdown closes the listener, waits for responses in flight, runs the lifespan shutdown, and the
    process exits 0. A second signal is uvicorn's: stop now (SIGINT twice: force).
    """

    def __init__(self, config: uvicorn.Config, service: GenerationService) -> None:
        super().__init__(config)
        self.service = service
        self.drain_requested = False
        self._drain: asyncio.Task[None] | None = None

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        if self.drain_requested or self.should_exit:
            super().handle_exit(sig, frame)
        else:  # a signal handler only sets a flag; on_tick starts the drain on the event loop
            self.drain_requested = True

    async def on_tick(self, counter: int) -> bool:
        if self.drain_requested and self._drain is None:
            log.info("shutdown requested: draining (a second signal stops at once)")
            self._drain = asyncio.create_task(self._drain_then_exit())
        return await super().on_tick(counter)

    async def _drain_then_exit(self) -> None:
        try:
            await self.service.drain()
        finally:
            self.should_exit = True


def uvicorn_config(app: FastAPI, **options: Any) -> uvicorn.Config:
    """uvicorn for an app from create_app, on the protocol that caps request heads and receive time."""
    settings: ServerSettings = app.state.settings
    protocol = limited_protocol(settings.max_header_bytes, settings.receive_timeout_s, app.state.service.metrics.reject)
    return uvicorn.Config(app, http=protocol, ws="none", **options)


def log_config(level: str) -> dict[str, Any]:
    """uvicorn's logging, and the server's own loggers (each loading step with its time, failures) on its handler."""
    config = copy.deepcopy(uvicorn.config.LOGGING_CONFIG)
    config["loggers"]["server"] = {"handlers": ["default"], "level": level.upper(), "propagate": False}
    return config


def build_server(app: FastAPI) -> DrainingServer:
    """The uvicorn server for an app from create_app, listening where its settings say."""
    settings: ServerSettings = app.state.settings
    config = uvicorn_config(
        app,
        host=settings.host,
        port=settings.port,
        log_level=settings.log_level,
        log_config=log_config(settings.log_level),
        # after the drain only responses being written remain; a second signal skips the drain and waits here
        timeout_graceful_shutdown=math.ceil(settings.drain_timeout_s),
    )
    return DrainingServer(config, app.state.service)


def serve(settings: ServerSettings) -> None:
    """Serve on settings.host:settings.port in this process until SIGTERM or SIGINT (`scott serve`); a model that
    cannot fit in this process's memory is refused before listening, with the numbers (exit status 2)."""
    try:
        memory_plan(settings.model_dir, settings.load_options())  # loading logs the plan it takes
    except MemoryBudgetError as exc:
        print(f"scott serve: {exc}", file=sys.stderr)
        sys.exit(2)
    except (OSError, ValueError, KeyError):
        pass  # a folder that cannot be read: loading says what is wrong, on /readyz and in the log
    server = build_server(create_app(settings))
    with contextlib.suppress(KeyboardInterrupt):  # a second Ctrl+C, re-raised by uvicorn
        server.run()
    if not server.started:
        sys.exit(STARTUP_FAILURE)
