"""The OpenAPI spec as served: once the model is loaded, width, height and size list exactly the values it makes
(in place of the static 1..4096 bound the request models carry before anything is loaded); on a server with API
keys, the routes that need one say so (a Bearer security scheme).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import FastAPI

from server.auth import is_open
from server.params import served_sizes
from server.service import GenerationService

# request model -> its fields that are a side in pixels, and its field that is a "WxH" string
_SIDES = {"GenerateRequest": ("width", "height"), "A1111Txt2ImgRequest": ("width", "height")}
_SIZE_STRINGS = {"OpenAIImageRequest": "size"}


def _narrow(field: dict[str, Any], allowed: dict[str, Any]) -> None:
    """Put `allowed` in place of the field's non-null schema (an optional field is anyOf [it, null])."""
    if "anyOf" in field:
        field["anyOf"] = [branch if branch.get("type") == "null" else allowed for branch in field["anyOf"]]
    else:
        for key in ("type", "minimum", "maximum", "maxLength"):
            field.pop(key, None)
        field.update(allowed)


def sized_openapi(schema: dict[str, Any], sizes: list[int]) -> dict[str, Any]:
    components = schema.get("components", {}).get("schemas", {})
    for model, fields in _SIDES.items():
        for name in fields:
            _narrow(components[model]["properties"][name], {"type": "integer", "enum": sizes})
    strings = ["auto", *(str(side) for side in sizes), *(f"{w}x{h}" for w in sizes for h in sizes)]
    for model, name in _SIZE_STRINGS.items():
        _narrow(components[model]["properties"][name], {"type": "string", "enum": strings})
    return schema


def require_keys(schema: dict[str, Any]) -> dict[str, Any]:
    """Mark every operation but the open ones (server.auth.is_open) as needing a Bearer API key."""
    schema.setdefault("components", {})["securitySchemes"] = {"bearer": {"type": "http", "scheme": "bearer"}}
    for path, operations in schema.get("paths", {}).items():
        if not is_open(path):
            for operation in operations.values():
                operation["security"] = [{"bearer": []}]
    return schema


def install_openapi(app: FastAPI, service: GenerationService, keyed: bool) -> None:
    """app.openapi answers the generic spec while loading, then (cached) the one with the model's sizes."""
    generic: Callable[[], dict[str, Any]] = app.openapi  # FastAPI's: caches in app.openapi_schema
    final: dict[str, Any] | None = None

    def openapi() -> dict[str, Any]:
        nonlocal final
        if final is None:
            app.openapi_schema = None  # the generic one is rebuilt until the model is known
            schema = require_keys(generic()) if keyed else generic()
            if service.state not in ("ready", "draining") or service.pipeline is None:
                return schema
            final = app.openapi_schema = sized_openapi(schema, served_sizes(service.pipeline.info))
        return final

    app.openapi = openapi  # type: ignore[method-assign]
