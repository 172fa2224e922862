"""The LLM backend interface the explainer and the LLM reranker talk to. Every call is async and honours a
deadline (`time.monotonic()` value): past it generation stops, and a caller that gives up earlier cancels the
call, which stops the work it started (vLLM aborts the request; transformers stops at the next token, and a
queued label-scoring call never starts).

Adapters are named as in the bundle (`manifest.llm.lora_adapters`): generation and `choose` use the
"explain" adapter when the bundle has one (base weights otherwise); `score_labels` names its own."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

from recbundle.rerank import render_chat

__all__ = ["EXPLAIN_ADAPTER", "DeadlineExceeded", "check_score_request", "Generation", "LLMBackend", "render_chat",
           "until"]

T = TypeVar("T")
EXPLAIN_ADAPTER = "explain"  # the bundle adapter (manifest.llm.lora_adapters) that explanations use


@dataclass(frozen=True)
class Generation:
    texts: list[str]  # one per prompt, new text only (the prompt is not repeated)
    new_tokens: int  # tokens generated over the whole batch
    stopped_early: bool = False  # the deadline cut generation short


class LLMBackend(Protocol):
    name: str
    has_soft_prompt: bool  # the bundle's soft-prompt tensor is loaded (used by `choose(soft_prompt=True)`)
    adapter_names: frozenset[str]  # LoRA adapters loaded, by bundle name
    tokenizer: Any  # the model's Hugging Face tokenizer (prompts are rendered and labels tokenized with it)

    def render(self, system: str, user: str, prefix: str = "") -> str:
        """A chat prompt in the model's own template, the assistant's answer starting with `prefix`."""
        ...

    async def generate(
        self, prompts: list[str], max_new_tokens: int, deadline: float, sample: bool = False
    ) -> Generation:
        """Generate for a batch of prompts; stop at `deadline` at the latest."""
        ...

    def stream(self, prompt: str, max_new_tokens: int, deadline: float) -> AsyncIterator[str]:
        """The new text of one prompt, piece by piece as it is generated; ends at `deadline` at the latest."""
        ...

    async def choose(self, prompt: str, choices: list[str], deadline: float, soft_prompt: bool = False) -> str:
        """One of `choices`, decoded under a constraint that allows nothing else. `soft_prompt` prepends
        the bundle's soft-prompt vectors to the prompt's token embeddings (DELRec-style prompts)."""
        ...

    async def score_labels(
        self, prompt: str, label_ids: list[int], deadline: float, *, soft_prompt: bool, adapter: str | None
    ) -> list[float]:
        """One forward pass over the prompt (behind the soft-prompt vectors with `soft_prompt`; with the
        named adapter, or the base weights for None): the next-token log-probabilities of `label_ids` at
        the last position, normalised over those tokens only (recbundle.rerank's scoring rule). Raises
        DeadlineExceeded past `deadline`."""
        ...

    async def aclose(self) -> None: ...


def check_score_request(soft_prompt: bool, has_soft_prompt: bool, adapter: str | None, loaded: set[str] | frozenset[str]) -> None:
    """The argument checks every backend's `score_labels` makes before any work."""
    if soft_prompt and not has_soft_prompt:
        raise ValueError("this backend has no soft prompt: the bundle names none")
    if adapter is not None and adapter not in loaded:
        raise ValueError(f"adapter {adapter!r} is not loaded (loaded: {sorted(loaded)})")


class DeadlineExceeded(Exception):
    """A backend call reached its deadline before it had an answer."""


async def until(job: Awaitable[T], deadline: float) -> T:
    """`job`'s result, or TimeoutError at `deadline` (a `time.monotonic()` value), `job` then cancelled: the
    one way every backend bounds a call (cancelling aborts the engine's or the server's request)."""
    return await asyncio.wait_for(job, max(deadline - time.monotonic(), 0.0))
