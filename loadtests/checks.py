"""What counts as a successful image response: HTTP 200 *and* a decodable-looking PNG (a 200 without one fails)."""

from __future__ import annotations

import base64
import binascii
import json
import struct

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def png_problem(data: bytes) -> str | None:
    """None if `data` starts like a PNG with a non-empty image (signature, then an IHDR chunk); else why not."""
    if not data.startswith(PNG_SIGNATURE):
        return f"not a PNG (starts with {data[:8]!r})"
    if len(data) < 33 or data[12:16] != b"IHDR":  # 8 signature + 4 length + 4 type + 13 IHDR data + 4 CRC
        return "PNG without an IHDR header"
    width, height = struct.unpack(">II", data[16:24])
    if width == 0 or height == 0:
        return f"empty PNG ({width}x{height})"
    return None


def error_message(body: bytes) -> str:
    """The server's {"error": {"message"}} if the body has one, else the start of the body."""
    try:
        return str(json.loads(body)["error"]["message"])[:300]
    except (ValueError, KeyError, TypeError):
        return body[:300].decode("utf-8", "replace")


def image_problem(status: int, content_type: str, body: bytes, want: str) -> str | None:
    """None if a POST /generate response carries the image(s) asked for; else a short reason (the failure's name).

    want: "png" (Accept: image/png, one raw PNG) or "json" (images[].b64_png).
    """
    if status != 200:
        return f"HTTP {status}: {error_message(body)}"
    media = content_type.split(";")[0].strip().lower()
    if want == "png":
        if media != "image/png":
            return f"200 with content type {media or 'none'!r}, not image/png"
        return png_problem(body)
    if media != "application/json":
        return f"200 with content type {media or 'none'!r}, not application/json"
    try:
        images = json.loads(body)["images"]
    except (ValueError, KeyError, TypeError):
        return "200 without an images list"
    if not isinstance(images, list) or not images:
        return "200 with no images"
    for image in images:
        try:
            data = base64.b64decode(image["b64_png"], validate=True)
        except (binascii.Error, KeyError, TypeError, ValueError):
            return "image without valid base64 b64_png"
        if problem := png_problem(data):
            return problem
    return None
