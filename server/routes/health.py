"""Liveness, readiness (model loaded and warmed up), their KServe v2 aliases, and /metrics."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse

from server.metrics import CONTENT_TYPE
from server.service import GenerationService

router = APIRouter()
# What an orchestrator and Prometheus call: never behind an API key or a Host check (they call a pod by its IP).
PROBE_PATHS = frozenset({"/healthz", "/readyz", "/v2/health/live", "/v2/health/ready", "/metrics"})
# What the probes answer besides 200: the spec says so, so a client generated from it expects the 503.
_NOT_LIVE = {503: {"description": "the model failed to load: the process can never serve (restart it)"}}
_NOT_READY = {503: {"description": "loading (the body's progress says what it is doing), draining or stopping"}}


def _service(request: Request) -> GenerationService:
    return request.app.state.service


@router.get("/healthz", responses=_NOT_LIVE)
async def healthz(request: Request) -> JSONResponse:
    """Live unless the model failed to load, so an orchestrator restarts a process that can never serve."""
    service = _service(request)
    if service.state == "failed":
        return JSONResponse({"status": "failed", "error": service.load_error}, status_code=503)
    return JSONResponse({"status": "ok"})


@router.get("/readyz", responses=_NOT_READY)
async def readyz(request: Request) -> JSONResponse:
    """200 once loaded and warmed up; 503 while loading, and from SIGTERM on ("draining", then "stopping")."""
    service = _service(request)
    body: dict[str, str | None] = {"status": service.state, "model": service.settings.served_model_name}
    if service.load_error:
        body["error"] = service.load_error
    if service.progress_text:
        body["progress"] = service.progress_text
    return JSONResponse(body, status_code=200 if service.state == "ready" else 503)


@router.get("/v2/health/live", responses=_NOT_LIVE)
async def kserve_live(request: Request) -> JSONResponse:
    live = _service(request).state != "failed"
    return JSONResponse({"live": live}, status_code=200 if live else 503)


@router.get("/v2/health/ready", responses=_NOT_READY)
async def kserve_ready(request: Request) -> JSONResponse:
    ready = _service(request).state == "ready"
    return JSONResponse({"ready": ready}, status_code=200 if ready else 503)


@router.get(
    "/metrics",
    response_class=Response,
    responses={
        200: {"description": "Prometheus text exposition", "content": {"text/plain": {"schema": {"type": "string"}}}}
    },
)
async def metrics(request: Request) -> Response:
    return Response(_service(request).metrics.render(), media_type=CONTENT_TYPE)
