"""Text tasks against brute force on a tiny random Llama: the loss is Hugging Face's causal-LM loss with the
prompt labels masked (-100), batched with right padding; the summed NLL gives the perplexity."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from recbundle.rerank import render_chat
from training.llm.core.model import EncoderConfig, load_base
from training.llm.core.soft_prompt import SoftPrompt
from training.llm.core.text_task import TextItem, TextScorer, perplexity

ITEMS = [
    TextItem("Item: Space story number 3\n\nDescribe this item.", "space; rockets; stars", "item"),
    TextItem("A user watched:\n- Romance story number 12\n- Romance story number 14\n\nDescribe them.",
             "romance", "user"),
    TextItem("Item: Horror story number 25", "horror; night terrors; a long list of monsters", "item"),
]


@pytest.fixture(scope="module")
def setup(tiny_llm_dir: Path) -> tuple[object, TextScorer]:
    model, tok = load_base(EncoderConfig(str(tiny_llm_dir), device="cpu"))
    return model.eval(), TextScorer(tok)


def _brute(model: object, scorer: TextScorer, item: TextItem,
           soft: SoftPrompt | None = None) -> tuple[float, int]:
    """(summed target NLL, target tokens) of one unpadded sequence through the full causal-LM forward."""
    prompt, target = scorer.encode(item)
    ids = torch.tensor([prompt + target])
    labels = torch.tensor([[-100] * len(prompt) + target])
    with torch.no_grad():
        if soft is None:
            loss = model(input_ids=ids, labels=labels).loss  # type: ignore[operator]
        else:
            embeds = model.get_input_embeddings()(ids)  # type: ignore[attr-defined]
            embeds, mask = soft(embeds, torch.ones_like(ids))
            labels = torch.cat([torch.full((1, soft.n_tokens), -100), labels], 1)  # soft vectors: no target
            out = model(inputs_embeds=embeds, attention_mask=mask, labels=labels)  # type: ignore[operator]
            loss = out.loss
    return float(loss) * len(target), len(target)


def test_encoding_renders_the_chat_template_and_ends_the_turn(setup: tuple) -> None:
    _, scorer = setup
    tok = scorer.tokenizer
    prompt, target = scorer.encode(ITEMS[0])
    assert tok.decode(prompt) == render_chat(tok, "You are a recommender system.", ITEMS[0].prompt)
    assert target[-1] == tok.eos_token_id and tok.decode(target[:-1]) == ITEMS[0].target
    plain_prompt, plain_target = scorer.encode(TextItem("", "Some review.", chat=False))
    assert plain_prompt == [tok.bos_token_id] and tok.decode(plain_target) == "Some review."


@pytest.mark.parametrize("with_soft", [False, True])
def test_text_loss_equals_the_masked_cross_entropy(setup: tuple, with_soft: bool) -> None:
    model, scorer = setup
    soft = SoftPrompt.from_vocabulary(model.get_input_embeddings().weight, 3, seed=0) if with_soft else None
    with torch.no_grad():
        got = float(scorer.loss(model, ITEMS, soft))  # one right-padded batch of different lengths
    sums, counts = zip(*(_brute(model, scorer, it, soft) for it in ITEMS), strict=True)
    assert got == pytest.approx(sum(sums) / sum(counts), rel=1e-4)  # token-weighted, not per-item mean


def test_target_tokens_are_truncated(setup: tuple) -> None:
    _, scorer = setup
    short = TextScorer(scorer.tokenizer, max_target_tokens=2)
    _, target = short.encode(ITEMS[2])
    assert len(target) == 3 and target[-1] == scorer.tokenizer.eos_token_id  # 2 tokens + end of turn


def test_nll_and_perplexity_equal_brute_force(setup: tuple) -> None:
    model, scorer = setup
    texts = ["A short review.", "Great recipes and quick dinners, every issue has something new.", "Meh"]
    items = [TextItem("", t, chat=False) for t in texts]
    sums, counts = scorer.nll(model, items, batch_size=2)
    brute = [_brute(model, scorer, it) for it in items]
    np.testing.assert_allclose(sums, [b[0] for b in brute], rtol=1e-4)
    assert counts.tolist() == [b[1] for b in brute]
    expected = np.exp(sum(b[0] for b in brute) / sum(b[1] for b in brute))
    assert perplexity(sums, counts) == pytest.approx(expected, rel=1e-4)
