"""Stop a request's work when its client goes away.

Once the body is read, the next ASGI `receive()` returns `http.disconnect` only when the client closes the
connection (or after the response). `until_disconnected` computes the answer in the caller's task while a
small watcher waits on `receive()`; a disconnect cancels the answer, and the cancellation reaches whatever it
awaits: the rerank and explanation LLM calls stop their generation (transformers at the next token, vLLM
aborts the request; service/llm/base.py).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable
from typing import Any, TypeVar

from starlette.requests import ClientDisconnect
from starlette.responses import StreamingResponse
from starlette.types import Receive, Scope, Send

from service.metrics.registry import Metrics

T = TypeVar("T")


async def until_disconnected(work: Awaitable[T], receive: Receive, metrics: Metrics, route: str) -> T:
    """`await work`, or cancel it and raise ClientDisconnect (counted) when the client disconnects first."""
    task = asyncio.current_task()
    assert task is not None
    gone = False

    async def watch() -> None:
        nonlocal gone
        while (await receive())["type"] != "http.disconnect":
            pass
        gone = True
        task.cancel()

    watcher = asyncio.create_task(watch())
    try:
        return await work
    except asyncio.CancelledError:
        if gone and task.uncancel() == 0:  # our cancel, not the server's: the client left
            metrics.client_disconnects.labels(route).inc()
            raise ClientDisconnect() from None
        raise
    finally:
        watcher.cancel()


class EventStream(StreamingResponse):
    """A StreamingResponse that stops as soon as its client disconnects and always closes its iterator.

    Starlette's own, under ASGI spec 2.4 (uvicorn), notices a disconnect only when a later `send` fails and
    then leaves the body iterator to the garbage collector: the explanation generation behind an SSE stream
    kept running after the client had gone (tests/service/api/test_disconnect.py). Closing the iterator
    runs the explainer's `finally`, which cancels its generation tasks; the backends then stop."""

    def __init__(self, content: AsyncIterator[bytes], metrics: Metrics, route: str, **kw: Any) -> None:
        super().__init__(content, **kw)
        self.metrics = metrics
        self.route = route

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await until_disconnected(self.stream_response(send), receive, self.metrics, self.route)
        except (ClientDisconnect, OSError):
            return  # nobody to answer
        finally:
            close = getattr(self.body_iterator, "aclose", None)
            if close is not None:
                await close()
