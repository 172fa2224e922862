"""A client that goes away stops the LLM work of its request: the JSON route (fast path and framework route)
and the SSE stream. Real generation with the tiny random Llama on the transformers backend, long enough
(512 new tokens per item) that only a cancellation ends it early."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from starlette.requests import ClientDisconnect
from starlette.types import ASGIApp

from service.api.hold import HoldGeneration
from service.main import create_app, lifespan
from service.settings import Settings
from tests.service.asgi import Exchange

MAX_NEW = 512
BODY = {"history": ["1001", "1002", "1003"], "k": 3, "explain": True, "rerank": False}


def _app(make_settings: Callable[..., Settings], tiny_llm_dir: Path) -> Any:
    return create_app(make_settings(
        llm_backend="transformers", llm_model=str(tiny_llm_dir), llm_dtype="float32",
        explain_max_new_tokens=MAX_NEW, explain_deadline_ms=120_000,
    ))  # fmt: skip


def _spy(app: Any) -> list[dict[str, Any]]:
    """Record every generation pass of the backend: when it ran, whether it was cancelled, how far it got."""
    backend = app.state.resources.llm.backend
    original = backend._generate
    calls: list[dict[str, Any]] = []

    def spy(*args: Any) -> Any:
        record: dict[str, Any] = {"cancelled": args[4], "end": None}
        calls.append(record)
        out = original(*args)
        record.update(end=time.monotonic(), stopped=out.stopped_early, tokens=out.new_tokens)
        return out

    backend._generate = spy
    return calls


async def _until(check: Callable[[], bool], timeout_s: float = 30.0) -> None:
    end = time.monotonic() + timeout_s
    while not check():
        assert time.monotonic() < end, "timed out"
        await asyncio.sleep(0.01)


def _disconnects(app: Any) -> float:
    value = app.state.metrics.registry.get_sample_value(
        "seqrec_client_disconnects_total", {"route": "/v1/recommend"}
    )
    return value or 0.0


@pytest.mark.parametrize("route", ["fast_path", "framework"])
def test_a_disconnect_cancels_the_explanation_generation(
    make_settings: Callable[..., Settings], tiny_llm_dir: Path, route: str
) -> None:
    app = _app(make_settings, tiny_llm_dir)

    async def scenario() -> None:
        async with lifespan(app):
            calls = _spy(app)
            target: ASGIApp = app
            owner = None
            if route == "framework":  # behind the fast path: the FastAPI route itself
                app.middleware_stack = app.build_middleware_stack()
                target = app.middleware_stack  # ... -> [FastPath] -> HoldGeneration -> ... -> the route
                while not isinstance(target, HoldGeneration):
                    target = target.app  # type: ignore[attr-defined]
                owner = app
            req = Exchange.post("/v1/recommend", BODY)
            task = asyncio.create_task(req.run(target, owner))
            await _until(lambda: bool(calls))
            await asyncio.sleep(0.2)  # generating
            gone = time.monotonic()
            req.disconnect.set()
            await _until(lambda: calls[0]["end"] is not None, 10.0)
            with pytest.raises(ClientDisconnect) if route == "framework" else contextlib.nullcontext():
                await task  # raised to the server, which has no one to answer
            record = calls[0]
            assert record["cancelled"].is_set() and record["stopped"]
            assert record["tokens"] < 3 * MAX_NEW and record["end"] - gone < 2.0
            assert req.status is None  # nothing was answered
            assert _disconnects(app) == 1
            assert app.state.resources.lifecycle.current.inflight == 0

    asyncio.run(scenario())


def test_closing_an_sse_stream_stops_its_generation(make_settings: Callable[..., Settings], tiny_llm_dir: Path) -> None:
    app = _app(make_settings, tiny_llm_dir)

    async def scenario() -> None:
        async with lifespan(app):
            calls = _spy(app)
            req = Exchange.post("/v1/recommend/stream", BODY)
            task = asyncio.create_task(req.run(app))
            await _until(lambda: any(b"explanation_delta" in c for c in req.chunks))
            await asyncio.sleep(0.2)  # generating (the worker runs one item's stream at a time)
            gone = time.monotonic()
            req.disconnect.set()
            done, _ = await asyncio.wait([task], timeout=10.0)  # ends (the failed send may raise)
            assert done
            await _until(lambda: all(c["end"] is not None for c in calls), 10.0)
            await asyncio.sleep(0.5)  # any queued item would have started by now
            late = [c for c in calls if c["end"] > gone]  # running or queued at the disconnect
            assert late, "no generation was running at the disconnect"
            for record in late:
                assert record["cancelled"].is_set() and record["stopped"] and record["end"] - gone < 3.0
            assert sum(c["tokens"] for c in calls) < 3 * MAX_NEW
            assert not req.done.is_set()  # the stream never reached its end
            assert app.state.resources.lifecycle.current.inflight == 0

    asyncio.run(scenario())
