"""The fault-injection wrapper (service/llm/faults.py): it stalls every engine call, ignores the call's
deadline like a hung engine, and a caller that gives up cancels the call before the engine sees it; the app
wraps its backend only when SEQREC_FAULT_LLM_DELAY_MS is set, and its own deadlines still hold."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from service.llm.base import Generation
from service.llm.faults import DelayedBackend
from service.main import create_app
from service.settings import Settings
from tests.service.ids import exts


class Engine:
    """A backend that answers at once and records which calls reached it."""

    name = "fake"
    has_soft_prompt = False
    adapter_names = frozenset({"rerank"})
    tokenizer = None

    def __init__(self) -> None:
        self.seen: list[str] = []

    def render(self, system: str, user: str, prefix: str = "") -> str:
        return f"{system}|{user}|{prefix}"

    async def generate(self, prompts: list[str], max_new_tokens: int, deadline: float, sample: bool = False) -> Generation:
        self.seen.append("generate")
        return Generation(["ok"] * len(prompts), len(prompts))

    async def stream(self, prompt: str, max_new_tokens: int, deadline: float) -> AsyncIterator[str]:
        self.seen.append("stream")
        for piece in ("a", "b"):
            yield piece

    async def choose(self, prompt: str, choices: list[str], deadline: float, soft_prompt: bool = False) -> str:
        self.seen.append("choose")
        return choices[0]

    async def score_labels(self, prompt: str, label_ids: list[int], deadline: float, *, soft_prompt: bool, adapter: str | None) -> list[float]:
        self.seen.append("score_labels")
        return [0.0] * len(label_ids)

    async def aclose(self) -> None:
        self.seen.append("aclose")


async def _timed(coro: Any) -> tuple[Any, float]:
    start = time.perf_counter()
    result = await coro
    return result, time.perf_counter() - start


def test_every_engine_call_waits_the_delay_then_reaches_the_engine() -> None:
    engine = Engine()
    slow = DelayedBackend(engine, 0.2)
    assert (slow.name, slow.adapter_names, slow.render("s", "u", "p")) == ("fake", frozenset({"rerank"}), "s|u|p")

    async def stream() -> list[str]:
        return [p async for p in slow.stream("p", 4, time.monotonic() + 10)]

    async def main() -> None:
        soon = time.monotonic() + 0.01  # the deadline passes during the stall: a hung engine ignores it
        calls = [
            slow.generate(["x", "y"], 4, soon),
            stream(),
            slow.choose("p", ["A", "B"], soon),
            slow.score_labels("p", [1, 2], soon, soft_prompt=False, adapter=None),
        ]
        results = [await _timed(c) for c in calls]
        assert [r for r, _ in results] == [Generation(["ok", "ok"], 2), ["a", "b"], "A", [0.0, 0.0]]
        assert all(0.2 <= seconds < 0.6 for _, seconds in results), results
        await slow.aclose()

    asyncio.run(main())
    assert engine.seen == ["generate", "stream", "choose", "score_labels", "aclose"]
    assert slow.calls == 4


def test_a_caller_that_gives_up_cancels_the_call_before_the_engine_sees_it() -> None:
    engine = Engine()
    slow = DelayedBackend(engine, 5.0)

    async def main() -> float:
        start = time.perf_counter()
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(slow.generate(["x"], 4, time.monotonic() + 0.05), 0.05)
        return time.perf_counter() - start

    assert asyncio.run(main()) < 1.0
    assert engine.seen == [] and slow.calls == 1


def _settings(tmp: Path, tiny_llm_dir: Path, bundle_dir: Path, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "bundle_dir": bundle_dir, "llm_backend": "transformers", "llm_model": str(tiny_llm_dir), "redis_url": None,
        "explain_max_new_tokens": 4, "explain_deadline_ms": 300,
    }  # fmt: skip
    return Settings(**(values | overrides))


def test_the_app_wraps_its_backend_only_when_asked(tmp_path: Path, tiny_llm_dir: Path, bundle_dir: Path) -> None:
    with TestClient(create_app(_settings(tmp_path, tiny_llm_dir, bundle_dir))) as client:
        assert not isinstance(client.app.state.resources.llm.backend, DelayedBackend)  # type: ignore[attr-defined]
    stalled = _settings(tmp_path, tiny_llm_dir, bundle_dir, fault_llm_delay_ms=30_000)
    with TestClient(create_app(stalled)) as client:
        backend = client.app.state.resources.llm.backend  # type: ignore[attr-defined]
        assert isinstance(backend, DelayedBackend) and backend.delay_s == 30.0
        start = time.perf_counter()
        body = client.post("/v1/recommend", json={"history": exts([1, 2]), "k": 3, "explain": True}).json()
        took = time.perf_counter() - start
        assert body["explanation_status"] == "timeout" and len(body["items"]) == 3, body
        assert took < 1.5 and backend.calls == 1  # the explainer's deadline (300 ms), not the 30 s stall
        assert client.get("/readyz").json()["components"]["llm"]["status"] == "ok"
