"""Every HTTP request holds the bundle generation it started on until its response ends.

An ASGI middleware, not a dependency: the ASGI call returns only after the last byte is sent, an SSE stream
included, whereas a dependency's exit runs at a point that differs between FastAPI versions for streams.
The generation goes into the scope (`GENERATION`); `deps.get_serving` reads it. Admin requests hold none
(a swap request must not keep the bundle it replaces open)."""

from __future__ import annotations

from collections.abc import Callable

from starlette.types import ASGIApp, Receive, Scope, Send

from service.core.lifecycle import Generation

GENERATION = "seqrec.generation"


class HoldGeneration:
    def __init__(self, app: ASGIApp, acquire: Callable[[], Generation | None]) -> None:
        self.app = app
        self.acquire = acquire

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"].startswith("/v1/admin/"):
            await self.app(scope, receive, send)
            return
        gen = self.acquire()  # None while starting or stopping: the route's dependency answers 503
        if gen is None:
            await self.app(scope, receive, send)
            return
        scope[GENERATION] = gen
        try:
            await self.app(scope, receive, send)
        finally:
            gen.release()
