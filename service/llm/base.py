"""The LLM backend interface the explainer talks to. Calls are synchronous: the explainer runs them on
its own worker thread and enforces the per-request deadline."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True)
class Generation:
    texts: list[str]  # one per prompt, new text only (the prompt is not repeated)
    new_tokens: int  # tokens generated over the whole batch
    stopped_early: bool = False  # the deadline cut generation short


class LLMBackend(Protocol):
    name: str

    def render(self, system: str, user: str, prefix: str = "") -> str:
        """A chat prompt in the model's own template, the assistant's answer starting with `prefix`."""
        ...

    def generate(
        self, prompts: list[str], max_new_tokens: int, deadline: float, sample: bool = False
    ) -> Generation:
        """Generate for a batch of prompts; stop at `deadline` (time.monotonic()) at the latest."""
        ...

    def close(self) -> None: ...
