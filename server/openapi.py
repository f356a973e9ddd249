"""The OpenAPI spec with the served model's sizes: once it is loaded, width, height and size list exactly the
values the model makes, in place of the static 1..4096 bound the request models carry before anything is loaded.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import FastAPI

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


def install_sized_openapi(app: FastAPI, service: GenerationService) -> None:
    """app.openapi answers the generic spec while loading, then (cached) the one with the model's sizes."""
    generic: Callable[[], dict[str, Any]] = app.openapi  # FastAPI's: caches in app.openapi_schema

    sized: dict[str, Any] | None = None

    def openapi() -> dict[str, Any]:
        nonlocal sized
        if sized is None:
            app.openapi_schema = None  # the generic one is rebuilt until the model is known
            schema = generic()
            if service.state not in ("ready", "draining") or service.pipeline is None:
                return schema
            sized = app.openapi_schema = sized_openapi(schema, served_sizes(service.pipeline.info))
        return sized

    app.openapi = openapi  # type: ignore[method-assign]
