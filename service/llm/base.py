"""The LLM backend interface the explainer (and the LLM reranker) talk to. Every call is async and
honours a deadline (`time.monotonic()` value): past it generation stops, and a caller that gives up earlier
cancels the call, which stops the work it started (vLLM aborts the request; transformers stops at the
next token)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Protocol

from recbundle.rerank import render_chat

__all__ = ["DeadlineExceeded", "Generation", "LLMBackend", "render_chat"]


@dataclass(frozen=True)
class Generation:
    texts: list[str]  # one per prompt, new text only (the prompt is not repeated)
    new_tokens: int  # tokens generated over the whole batch
    stopped_early: bool = False  # the deadline cut generation short


class LLMBackend(Protocol):
    name: str
    has_soft_prompt: bool  # the bundle's soft-prompt tensor is loaded (used by `choose(soft_prompt=True)`)

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

    async def aclose(self) -> None: ...


class DeadlineExceeded(Exception):
    """A backend call reached its deadline before it had an answer."""
