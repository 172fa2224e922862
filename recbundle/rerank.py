"""The LLM candidate-ranking contract (DELRec, arXiv 2406.11156): one prompt shows the user's recent history
titles and C candidates, each under a short label; the score of every candidate is the next-token
log-probability of its label at the answer position, normalised over the C labels only, so ranking C items
costs one prefill. Training (offline scorer) and the service (rerank stage) both render prompts here, so a
bundle is scored the same way on both sides.

stdlib + pydantic only: the tokenizer is passed in (duck-typed: `__call__`, `apply_chat_template`,
`chat_template`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

PROMPT_VERSION = "rank-v1"
DEFAULT_LABELS = [chr(ord("A") + i) for i in range(26)]
PLACEHOLDER_TITLES = {"", "unknown", "none", "n/a", "null"}  # e.g. ML-100K's item 267 is titled "unknown"


class RankPrompt(BaseModel):
    """Wording of the ranking prompt (ours; DELRec's templates are in its official code, reworded)."""

    model_config = ConfigDict(extra="forbid")
    system: str = "You are a recommender system."
    instruction: str = (
        "A user interacted with these items, oldest first:\n{history}\n\n"
        "Candidates:\n{candidates}\n\n"
        "Which candidate will the user interact with next? Answer with its letter only."
    )
    max_title_chars: int = Field(default=80, ge=8)
    answer_prefix: str = ""  # text the assistant's answer starts with; the label token follows it


class RerankSpec(BaseModel):
    """How a bundle's LLM ranks: written by training into `manifest.llm.rerank`, read by the service."""

    model_config = ConfigDict(extra="forbid")
    prompt_version: str = PROMPT_VERSION
    prompt: RankPrompt = Field(default_factory=RankPrompt)
    n_candidates: int = Field(default=20, ge=2, le=26)
    history_items: int = Field(default=10, ge=1)
    labels: list[str] = Field(default_factory=lambda: DEFAULT_LABELS[:20])
    adapter: str | None = "rerank"  # name in manifest.llm.lora_adapters; None = the base weights
    soft_prompt: bool = True  # prepend manifest.llm.soft_prompt's vectors to the token embeddings
    blend_lambda: float = 1.0  # final score = teacher inner product + lambda * label log-probability
    metrics: dict[str, Any] = Field(default_factory=dict)  # offline figures of this ranker (informational)

    @model_validator(mode="after")
    def _labels_cover_candidates(self) -> RerankSpec:
        if len(self.labels) < self.n_candidates or len(set(self.labels)) != len(self.labels):
            raise ValueError(f"labels must be {self.n_candidates} distinct strings, got {self.labels}")
        return self


def item_title(title: str | None, item_id: int, max_chars: int) -> str:
    """One line for an item: its title cut to `max_chars`, or `item <id>` for a placeholder title."""
    text = " ".join((title or "").split())
    if text.lower() in PLACEHOLDER_TITLES:
        return f"item {item_id}"
    return text if len(text) <= max_chars else text[: max_chars - 1].rstrip() + "…"


def rank_messages(
    history: Sequence[tuple[int, str | None]],
    candidates: Sequence[tuple[int, str | None]],
    spec: RerankSpec,
    instruction: str | None = None,
    **fields: str,
) -> tuple[str, str]:
    """(system, user) for a history (oldest first) and candidates in display order, each as (id, title).
    The newest `spec.history_items` history items are shown; candidate i is shown under `spec.labels[i]`.
    Training tasks pass their own `instruction` with extra `fields` (hints, a worked example); serving uses
    the spec's instruction alone."""
    if not 1 <= len(candidates) <= len(spec.labels):
        raise ValueError(f"{len(candidates)} candidates; this spec labels 1..{len(spec.labels)}")
    p = spec.prompt
    shown = list(history)[-spec.history_items :]
    hist = "\n".join(f"- {item_title(t, i, p.max_title_chars)}" for i, t in shown) or "- (nothing yet)"
    cands = "\n".join(
        f"{label}. {item_title(t, i, p.max_title_chars)}"
        for label, (i, t) in zip(spec.labels, candidates, strict=False)  # fewer candidates than labels: fine
    )
    return p.system, (instruction or p.instruction).format(history=hist, candidates=cands, **fields)


def render_chat(tokenizer: Any, system: str, user: str, prefix: str = "") -> str:
    """A chat prompt in the tokenizer's own template (plain text without one), the assistant's answer
    starting with `prefix`."""
    messages = [{"role": "system", "content": system}, {"role": "user", "content": user}]
    if getattr(tokenizer, "chat_template", None):
        text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        return str(text) + prefix
    return f"{system}\n\n{user}\n\nAnswer: {prefix}"


def rank_prompt(
    tokenizer: Any,
    history: Sequence[tuple[int, str | None]],
    candidates: Sequence[tuple[int, str | None]],
    spec: RerankSpec,
    instruction: str | None = None,
    **fields: str,
) -> str:
    """The full prompt text; its last token is the answer position whose next token is a label."""
    system, user = rank_messages(history, candidates, spec, instruction, **fields)
    return render_chat(tokenizer, system, user, spec.prompt.answer_prefix)


def label_token_ids(tokenizer: Any, labels: Sequence[str]) -> list[int]:
    """The one token each label is written as at the answer position; an error when a label is not one
    token or two labels share it (the one-prefill scorer needs a distinct single token per label)."""
    ids = []
    for label in labels:
        toks = tokenizer(label, add_special_tokens=False)["input_ids"]
        if len(toks) != 1:
            raise ValueError(f"label {label!r} is {len(toks)} tokens for this tokenizer; labels must be one token")
        ids.append(int(toks[0]))
    if len(set(ids)) != len(ids):
        raise ValueError(f"labels {list(labels)} share tokens: {ids}")
    return ids


def log_softmax(values: Sequence[float]) -> list[float]:
    """Log-probabilities of `values` normalised over themselves (the C labels only)."""
    top = max(values)
    z = top + math.log(sum(math.exp(v - top) for v in values))
    return [v - z for v in values]


def blend(teacher: Sequence[float], llm_logprob: Sequence[float], lam: float) -> list[float]:
    """DELRec-style fusion used by the product: teacher score + lambda * LLM label log-probability."""
    return [t + lam * s for t, s in zip(teacher, llm_logprob, strict=True)]
