"""Refuse request bodies over `max_body_bytes` with a 413 before they are parsed, and bodies that take longer
than `body_timeout_s` to arrive with a 408.

The refused body is read and dropped (up to DRAIN_MAX_BYTES) before the 413 goes out: a server that answers
and closes while the client is still sending makes the client's TCP stack see a reset, and most clients
then report "connection reset" instead of the 413 they were sent."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from starlette.requests import ClientDisconnect
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.errors import BodyTimeout, BodyTooLarge, error_body

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


class _Body:
    """One request body being read: its deadline, and whether its task waits in receive()."""

    __slots__ = ("deadline", "task", "waiting", "timed_out")

    def __init__(self, deadline: float, task: asyncio.Task[Any]) -> None:
        self.deadline = deadline
        self.task = task
        self.waiting = False
        self.timed_out = False


class BodyDeadlineMiddleware:
    """A request body must arrive within `timeout_s` of the request's headers; past it the request is answered
    408 `body_timeout` with `Connection: close` (`reject`), whatever the route made of the cut body. Neither uvicorn
    (--timeout-keep-alive bounds idle connections between requests) nor h11/httptools bounds a body that
    trickles in or stops halfway, and each such client held a connection, a file descriptor and a parked request
    for as long as it liked (the fault campaign's slow_clients fault). Only the body is bounded: after its last
    part, reads (a streaming route waiting for a disconnect) pass through untouched.

    Deadlines are checked by one sweep a second over the bodies still being read (so a 408 comes up to 1 s
    late), not by a timer per request: `asyncio.timeout_at` around each receive() cost 12.6 us per call and a
    `call_later` + `cancel` per request 5 us, against 0.6 us for the bare await (this CPU, 100k calls); the hot
    path's whole event-loop budget is ~100 us (docs/service.md). As written the middleware adds ~6.5 us per POST
    (a trivial ASGI app, 50k calls in process: 1.9 us bare, 8.4 us through it), most of it the wrapped
    receive/send coroutines."""

    SWEEP_S = 1.0

    def __init__(self, app: ASGIApp, timeout_s: Callable[[], float]) -> None:
        self.app = app
        self.timeout_s = timeout_s  # read per request: settings are built at startup, after the middleware
        self._reading: set[_Body] = set()
        self._sweeping = False

    def _sweep(self) -> None:
        now = asyncio.get_running_loop().time()
        for body in [b for b in self._reading if b.deadline <= now]:
            self._reading.discard(body)
            body.timed_out = True
            if body.waiting:
                body.task.cancel()  # its pending receive(); turned into BodyTimeout there
        self._sweeping = bool(self._reading)
        if self._sweeping:
            asyncio.get_running_loop().call_later(self.SWEEP_S, self._sweep)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope.get("method") not in {"POST", "PUT", "PATCH"}:
            await self.app(scope, receive, send)
            return
        timeout_s = self.timeout_s()
        loop = asyncio.get_running_loop()
        task = asyncio.current_task()
        assert task is not None
        state = _Body(loop.time() + timeout_s, task)
        self._reading.add(state)
        if not self._sweeping:
            self._sweeping = True
            loop.call_later(self.SWEEP_S, self._sweep)
        started = False

        async def bounded() -> Message:
            if state not in self._reading:  # the body is in, or its deadline passed
                if state.timed_out:
                    raise self.error(timeout_s)
                return await receive()
            state.waiting = True
            try:
                message = await receive()
            except asyncio.CancelledError:
                if not state.timed_out:
                    raise
                task.uncancel()
                raise self.error(timeout_s) from None
            finally:
                state.waiting = False
            if message["type"] != "http.request" or not message.get("more_body", False):
                self._reading.discard(state)
            return message

        async def tracked(message: Message) -> None:
            nonlocal started
            if not state.timed_out:
                started = started or message["type"] == "http.response.start"
                await send(message)
            elif not started and message["type"] == "http.response.start":
                # whatever a route made of the cut body (FastAPI answers its own 400 "error parsing the body"),
                # the answer is the 408; the app's own messages for this request are dropped
                started = True
                await self.reject(scope, receive, send, timeout_s)

        try:
            await self.app(scope, bounded, tracked)
        except BodyTimeout:  # raised where no handler maps it (e.g. BodyLimitMiddleware's buffering)
            if started:
                raise
            await self.reject(scope, receive, send, timeout_s)
        finally:
            self._reading.discard(state)

    @staticmethod
    def error(timeout_s: float) -> BodyTimeout:
        return BodyTimeout(f"the request body did not arrive within {timeout_s:g} s of its headers: send it at once")

    async def reject(self, scope: Scope, receive: Receive, send: Send, timeout_s: float) -> None:
        """408 in the error shape, with `Connection: close`: the rest of the body never came, so the connection
        cannot serve another request (uvicorn otherwise kept it open)."""
        exc = self.error(timeout_s)
        response = JSONResponse(error_body(exc.code, exc.message), status_code=exc.status_code,
                                headers={"connection": "close"})  # fmt: skip
        await response(scope, receive, send)
