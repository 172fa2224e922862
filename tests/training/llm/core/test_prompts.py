from pathlib import Path

import numpy as np
import pytest

from training.data.types import ItemMeta
from training.llm.core.prompts import (
    PromptConfig,
    catalogue_texts,
    item_text,
    user_prompt_ids,
    virtual_user_ids,
)


@pytest.fixture(scope="module")
def tok(tiny_llm_dir: Path):  # type: ignore[no-untyped-def]
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_llm_dir)


def _text(tok, ids: list[int]) -> str:  # type: ignore[no-untyped-def]
    return tok.decode(ids)


def test_history_is_newest_last_and_capped(tok) -> None:  # type: ignore[no-untyped-def]
    items = [ItemMeta(str(i), title=f"Film {i}") for i in range(1, 8)]
    texts = catalogue_texts(items, PromptConfig())
    cfg = PromptConfig(max_history_items=3)
    s = _text(tok, user_prompt_ids(np.array([1, 2, 3, 4, 5]), texts, cfg, tok))
    assert "Film 1\n" not in s and "Film 2\n" not in s
    assert s.index("1. Film 3") < s.index("2. Film 4") < s.index("3. Film 5")
    assert "<|im_start|>assistant" in s  # chat template with the generation prompt


def test_virtual_user_uses_the_same_template(tok) -> None:  # type: ignore[no-untyped-def]
    cfg = PromptConfig()
    one = _text(tok, virtual_user_ids("Film 9", cfg, tok))
    hist = _text(tok, user_prompt_ids(np.array([1]), ["", "Film 9"], cfg, tok))
    assert one == hist


def test_id_only_and_plain_text(tok) -> None:  # type: ignore[no-untyped-def]
    meta = ItemMeta("x", title="Film", categories=["Drama"])
    assert item_text(12, meta, PromptConfig(id_only=True)) == "item_12"
    assert item_text(12, ItemMeta("x"), PromptConfig()) == "item_12"  # no title: the id form
    assert item_text(12, meta, PromptConfig(show_categories=True)) == "Film (Drama)"
    plain = _text(tok, virtual_user_ids("Film", PromptConfig(use_chat_template=False), tok))
    assert "<|im_start|>" not in plain and "1. Film" in plain


def test_long_history_is_cut_to_the_token_budget(tok) -> None:  # type: ignore[no-untyped-def]
    texts = [""] + [f"A rather long film title number {i}" for i in range(1, 41)]
    cfg = PromptConfig(max_history_items=40, max_prompt_tokens=120)
    ids = user_prompt_ids(np.arange(1, 41), texts, cfg, tok)
    assert len(ids) <= 120
    s = _text(tok, ids)
    assert "number 40" in s and "number 1\n" not in s  # the newest items survive
    assert s.rstrip().endswith("assistant")  # lines were dropped, the template was not cut
