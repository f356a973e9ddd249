"""The API docs, served from the package (fastapi-offline's copy of Swagger UI and ReDoc), never from a CDN: an
air-gapped host shows them too. /docs (Swagger UI), /redoc, and their assets under DOCS_ASSETS."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi_offline import FastAPIOffline

DOCS_ASSETS = "/docs/assets"  # swagger-ui-bundle.js, swagger-ui.css, redoc.standalone.js, favicon.png
# Open like the docs pages: they describe the API, not the model (the spec's sizes are the model's public limits).
DOCS_PATHS = frozenset({"/docs", "/docs/oauth2-redirect", "/redoc", "/openapi.json"})


def is_docs_path(path: str) -> bool:
    return path in DOCS_PATHS or path.startswith(DOCS_ASSETS + "/")


def app_with_docs(**options: Any) -> FastAPI:
    """FastAPI(**options) with /docs and /redoc on the packaged assets (no validator badge: that is another host)."""
    return FastAPIOffline(static_url=DOCS_ASSETS, swagger_ui_parameters={"validatorUrl": None}, **options)
