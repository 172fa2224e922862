"""Fault injection for the fault campaign (`scripts/fault_campaign.py --faults llm_stall`), never for
production: `SEQREC_FAULT_LLM_DELAY_MS` wraps the opened backend in `DelayedBackend`, which holds every engine
call (generate, stream, choose, score_labels) for that long before passing it on. The wait ignores the call's
deadline, as a hung engine would: what keeps answers on time is the callers' own deadlines (the explainer's and
the reranker's `asyncio.wait_for`), which is what the campaign measures. A caller that gives up cancels the wait,
so the wrapped engine never starts that call."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

from service.llm.base import Generation, LLMBackend


class DelayedBackend:
    """An LLMBackend that waits `delay_s` before every engine call of `inner` (prompt rendering and closing
    are not engine calls and pass straight through)."""

    def __init__(self, inner: LLMBackend, delay_s: float) -> None:
        self.inner = inner
        self.delay_s = delay_s
        self.name = inner.name  # explanation cache keys name the real backend
        self.has_soft_prompt = inner.has_soft_prompt
        self.adapter_names = inner.adapter_names
        self.tokenizer = inner.tokenizer
        self.calls = 0  # engine calls that started waiting (the tests count them)

    async def _stall(self) -> None:
        self.calls += 1
        await asyncio.sleep(self.delay_s)

    def render(self, system: str, user: str, prefix: str = "") -> str:
        return self.inner.render(system, user, prefix)

    async def generate(
        self, prompts: list[str], max_new_tokens: int, deadline: float, sample: bool = False
    ) -> Generation:
        await self._stall()
        return await self.inner.generate(prompts, max_new_tokens, deadline, sample=sample)

    async def stream(self, prompt: str, max_new_tokens: int, deadline: float) -> AsyncIterator[str]:
        await self._stall()
        async for piece in self.inner.stream(prompt, max_new_tokens, deadline):
            yield piece

    async def choose(self, prompt: str, choices: list[str], deadline: float, soft_prompt: bool = False) -> str:
        await self._stall()
        return await self.inner.choose(prompt, choices, deadline, soft_prompt=soft_prompt)

    async def score_labels(
        self, prompt: str, label_ids: list[int], deadline: float, *, soft_prompt: bool, adapter: str | None
    ) -> list[float]:
        await self._stall()
        return await self.inner.score_labels(prompt, label_ids, deadline, soft_prompt=soft_prompt, adapter=adapter)

    async def aclose(self) -> None:
        await self.inner.aclose()

    def __getattr__(self, name: str) -> Any:  # backend-specific extras (e.g. a transformers model) for tests
        return getattr(self.inner, name)
