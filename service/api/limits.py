"""Refuse request bodies over `max_body_bytes` with a 413 before they are parsed.

The refused body is read and dropped (up to DRAIN_MAX_BYTES) before the 413 goes out: a server that answers
and closes while the client is still sending makes the client's TCP stack see a reset, and most clients
then report "connection reset" instead of the 413 they were sent."""

from __future__ import annotations

from collections.abc import Callable

from starlette.requests import ClientDisconnect
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.errors import BodyTooLarge, error_body

DRAIN_MAX_BYTES = 64 * 1024 * 1024  # past it the connection is closed unread (the client sees a reset)


def too_large(limit: int) -> BodyTooLarge:
    return BodyTooLarge(f"request body is larger than {limit} bytes: send a shorter history")


async def drain(receive: Receive, already: int = 0) -> None:
    """Read and drop the rest of a request body, up to DRAIN_MAX_BYTES in all."""
    size = already
    while size <= DRAIN_MAX_BYTES:
        message = await receive()
        if message["type"] != "http.request":
            return
        size += len(message.get("body", b""))
        if not message.get("more_body", False):
            return


async def read_body(scope: Scope, receive: Receive, limit: int) -> bytes:
    """The whole request body, refusing (BodyTooLarge) a declared or actual size over `limit`."""
    declared = dict(scope["headers"]).get(b"content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        await drain(receive)
        raise too_large(limit)
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientDisconnect()
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            if message.get("more_body", False):
                await drain(receive, size)
            raise too_large(limit)
        chunks.append(chunk)
        if not message.get("more_body", False):
            return chunks[0] if len(chunks) == 1 else b"".join(chunks)


class BodyLimitMiddleware:
    def __init__(self, app: ASGIApp, limit: Callable[[], int]) -> None:
        self.app = app
        self.limit = limit  # read per request: settings are built at startup, after the middleware

    async def _reject(self, scope: Scope, receive: Receive, send: Send, limit: int) -> None:
        exc = too_large(limit)
        await JSONResponse(error_body(exc.code, exc.message), status_code=exc.status_code)(
            scope, receive, send
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope.get("method") not in {"POST", "PUT", "PATCH"}:
            await self.app(scope, receive, send)
            return
        limit = self.limit()
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and declared.isdigit():
            if int(declared) > limit:
                await drain(receive)
                await self._reject(scope, receive, send, limit)
                return
            # h11/httptools deliver no more body than Content-Length declares: nothing to buffer
            await self.app(scope, receive, send)
            return
        # no (or a lying) Content-Length: read up to the limit, then replay what was read
        messages: list[Message] = []
        size = 0
        while True:
            message = await receive()
            messages.append(message)
            size += len(message.get("body", b""))
            if size > limit:
                if message.get("more_body", False):
                    await drain(receive, size)
                await self._reject(scope, receive, send, limit)
                return
            if message["type"] != "http.request" or not message.get("more_body", False):
                break

        async def replay() -> Message:
            return messages.pop(0) if messages else await receive()

        await self.app(scope, replay, send)
