"""Stop a request's work when its client goes away.

Once the body is read, the next ASGI `receive()` returns `http.disconnect` only when the client closes the
connection (or after the response). `until_disconnected` computes the answer in the caller's task while a
small watcher waits on `receive()`; a disconnect cancels the answer, and the cancellation reaches whatever it
awaits: the rerank and explanation LLM calls stop their generation (transformers at the next token, vLLM
aborts the request; service/llm/base.py).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import TypeVar

from starlette.requests import ClientDisconnect
from starlette.types import Receive

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
