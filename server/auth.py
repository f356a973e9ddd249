"""API keys: `Authorization: Bearer KEY` on every route but the probes, /metrics and the docs; a per-key bound.

Pure ASGI (as server.middleware) so a refused request never reaches the routes or reads its body.
"""

from __future__ import annotations

import hmac
from collections import Counter
from collections.abc import Callable, Iterable

from starlette.types import ASGIApp, Receive, Scope, Send

from server.docs import is_docs_path
from server.errors import error_response
from server.routes.health import PROBE_PATHS

# Open without a key: the probes and /metrics (orchestrators and Prometheus must reach them); the docs (/docs,
# /redoc, the spec, their assets) and the playground page say nothing about the model (the page asks for a key for
# its own calls, /info and /generate).
OPEN_PATHS = PROBE_PATHS | {"/"}


def is_open(path: str) -> bool:
    return path in OPEN_PATHS or is_docs_path(path)


def _www_authenticate(error: str | None = None) -> dict[str, str]:
    challenge = 'Bearer realm="scott"' + (f', error="{error}"' if error else "")
    return {"WWW-Authenticate": challenge}


class ApiKeys:
    """401 without a known Bearer key (compared in constant time); 429 past max_per_key requests in flight."""

    def __init__(
        self,
        app: ASGIApp,
        keys: Iterable[bytes],
        max_per_key: int | None = None,
        on_reject: Callable[[str], None] = lambda reason: None,
    ) -> None:
        self.app, self.keys, self.max_per_key, self.on_reject = app, tuple(keys), max_per_key, on_reject
        self._in_flight: Counter[int] = Counter()  # by key index: the keys themselves are kept in one place

    def _match(self, token: bytes) -> int | None:
        # Every key is compared, found or not, so the time says nothing about which key (or how much of it) matched.
        found = None
        for index, key in enumerate(self.keys):
            if hmac.compare_digest(token, key):
                found = index
        return found

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or is_open(scope["path"]):
            await self.app(scope, receive, send)
            return
        scheme, _, token = dict(scope["headers"]).get(b"authorization", b"").partition(b" ")
        index = self._match(token.strip()) if scheme.lower() == b"bearer" else None
        if index is None:
            self.on_reject("unauthorized")
            given = bool(token.strip()) and scheme.lower() == b"bearer"
            message = (
                "authorization: the API key is not valid"
                if given
                else "authorization: an API key is required (header Authorization: Bearer KEY)"
            )
            headers = _www_authenticate("invalid_token" if given else None)
            await error_response(401, "unauthorized", message, "authorization", headers=headers)(scope, receive, send)
            return
        if self.max_per_key is not None and self._in_flight[index] >= self.max_per_key:
            self.on_reject("key_busy")
            message = f"authorization: this API key already has {self.max_per_key} requests in flight, the most allowed"
            response = error_response(429, "key_busy", message, "authorization", headers={"Retry-After": "1"})
            await response(scope, receive, send)
            return
        self._in_flight[index] += 1
        try:
            await self.app(scope, receive, send)
        finally:
            self._in_flight[index] -= 1
