"""User prompts for P2Rec: a user's history as text, and the one-item "virtual user" for stage (b).

Stage (b) feeds each item alone through the tuned LLM as a user whose history is that one item, with the
SAME template as stage (a), so the inputs look like the ones the LoRA was tuned on (P2Rec's information
augmentation). The wording of the instruction and the system line are ours (config fields).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from training.data.types import ItemMeta


@dataclass
class PromptConfig:
    max_history_items: int = 20  # newest M items of the history (newest last)
    max_prompt_tokens: int = 384  # older items are dropped until the prompt fits
    id_only: bool = False  # "item_123" instead of titles, for catalogues with little text
    show_categories: bool = False  # append the item's own categories/genres to its title
    use_chat_template: bool = True  # the tokenizer's chat template when it has one, else plain text
    system_prompt: str | None = "You are a recommender system."  # None: the template's default
    instruction: str = (
        "A user interacted with these items, oldest first:\n{history}\nSummarise this user's preferences."
    )


def item_text(item_id: int, meta: ItemMeta | None, cfg: PromptConfig) -> str:
    """One line of text for an item; the id form when `id_only` or when the item has no title."""
    if cfg.id_only or meta is None or not meta.title.strip():
        return f"item_{item_id}"
    text = meta.title.strip()
    if cfg.show_categories and meta.categories:
        text += f" ({', '.join(meta.categories)})"
    return text


def catalogue_texts(items: Sequence[ItemMeta], cfg: PromptConfig) -> list[str]:
    """Text per dense id, index 0 = padding (empty): texts[i] describes items[i - 1]."""
    return [""] + [item_text(i + 1, meta, cfg) for i, meta in enumerate(items)]


def render(lines: Sequence[str], cfg: PromptConfig, tokenizer: Any) -> str:
    """The prompt string for a history given as item texts (oldest first)."""
    history = "\n".join(f"{i + 1}. {t}" for i, t in enumerate(lines))
    content = cfg.instruction.format(history=history)
    if cfg.use_chat_template and getattr(tokenizer, "chat_template", None):
        messages = [{"role": "user", "content": content}]
        if cfg.system_prompt is not None:
            messages.insert(0, {"role": "system", "content": cfg.system_prompt})
        # The generation prompt ends the input where an answer would start: the last token then sits
        # where the model summarises the user, which is what "last" pooling reads.
        return str(tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True))
    prefix = f"{cfg.system_prompt}\n" if cfg.system_prompt else ""
    return f"{prefix}{content}\n"


def encode_history(lines: Sequence[str], cfg: PromptConfig, tokenizer: Any) -> list[int]:
    """Token ids of the prompt for the newest `max_history_items` lines, dropping older lines until the
    prompt fits `max_prompt_tokens` (one line is always kept, cut at the token limit if it must be)."""
    return encode_history_shown(lines, cfg, tokenizer)[0]


def encode_history_shown(lines: Sequence[str], cfg: PromptConfig, tokenizer: Any) -> tuple[list[int], int]:
    """`encode_history`'s ids and how many of the newest lines the prompt shows."""
    lines = list(lines)[-cfg.max_history_items :] if cfg.max_history_items > 0 else []
    while True:
        ids = tokenizer(render(lines, cfg, tokenizer), add_special_tokens=False)["input_ids"]
        if len(ids) <= cfg.max_prompt_tokens or len(lines) <= 1:
            return list(ids[: cfg.max_prompt_tokens]), len(lines)
        # drop proportionally to the overshoot (at least one line) to avoid one tokenisation per line
        excess = len(ids) - cfg.max_prompt_tokens
        per_line = max(1, (len(ids) - 40) // max(1, len(lines)))
        lines = lines[max(1, -(-excess // per_line)) :] or lines[-1:]


def user_prompt_ids(
    history: np.ndarray, texts: Sequence[str], cfg: PromptConfig, tokenizer: Any
) -> list[int]:
    """Prompt token ids for a user history of dense item ids (oldest first)."""
    return encode_history([texts[int(i)] for i in history], cfg, tokenizer)


def shown_items(history: np.ndarray, texts: Sequence[str], cfg: PromptConfig, tokenizer: Any) -> int:
    """How many of the newest items of `history` the user prompt shows (P2Rec's "shown" target)."""
    return encode_history_shown([texts[int(i)] for i in history], cfg, tokenizer)[1]


def virtual_user_ids(text: str, cfg: PromptConfig, tokenizer: Any) -> list[int]:
    """Stage (b): the same template with a one-item history."""
    return encode_history([text], cfg, tokenizer)
