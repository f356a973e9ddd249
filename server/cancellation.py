"""Client-disconnect cancellation at the route (vLLM's `with_cancellation`): a request nobody will read is
cancelled, so its queued images are dropped before they cost compute."""

from __future__ import annotations

import asyncio
import functools
import inspect
from collections.abc import Awaitable, Callable
from typing import ParamSpec, TypeVar, cast

from fastapi import Request, Response

from server.service import DISCONNECTED

CLIENT_CLOSED = 499  # nginx's code for "client closed request"; nobody receives it, the metrics count it

P = ParamSpec("P")
R = TypeVar("R")


def with_cancellation(handler: Callable[P, Awaitable[R]]) -> Callable[P, Awaitable[R | Response]]:
    """Race the route handler against its client's disconnect; on disconnect, cancel it and answer 499.

    The handler needs a `request: Request` parameter. It is cancelled with the message DISCONNECTED, which
    GenerationService.run reads to count the drop as a disconnect rather than a server-side cancellation.
    """
    if "request" not in inspect.signature(handler).parameters:
        raise TypeError(f"{handler.__name__} needs a `request: Request` parameter to watch for its client")

    @functools.wraps(handler)
    async def race(*args: P.args, **kwargs: P.kwargs) -> R | Response:
        request = cast(Request, kwargs["request"])
        work: asyncio.Task[R] = asyncio.ensure_future(handler(*args, **kwargs))
        gone = asyncio.ensure_future(_disconnected(request))
        try:
            await asyncio.wait({work, gone}, return_when=asyncio.FIRST_COMPLETED)
        except asyncio.CancelledError:  # the server cancelled this request (shutdown): its handler goes too
            work.cancel()
            raise
        finally:
            gone.cancel()
        if work.done():
            return work.result()
        work.cancel(DISCONNECTED)
        await asyncio.wait({work})  # let it drop its job before answering
        for task in (work, gone):  # read what they ended with (nobody else will), so asyncio logs no "never retrieved"
            if not task.cancelled():
                task.exception()
        return Response(status_code=CLIENT_CLOSED)

    return race


async def _disconnected(request: Request) -> None:
    """Returns when the client goes away. The body was read already, so receive() now waits for disconnect."""
    while (await request.receive())["type"] != "http.disconnect":
        pass
