"""Language-keeping figures against brute force: perplexity = exp of the token-weighted NLL of the full
causal-LM forward; held-out texts come from held-out events only."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from recbundle.rerank import render_chat
from tests.training.llm.relrec.conftest import LEAK_TEST, LEAK_VALID
from training.data.types import SequenceDataset, Split
from training.llm.core.model import EncoderConfig, load_base
from training.llm.relrec.perplexity import (
    EXPLANATIONS,
    explanation_loglik,
    heldout_review_texts,
    language_report,
    text_perplexity,
)


@pytest.fixture(scope="module")
def model_tok(tiny_llm_dir: Path) -> tuple[object, object]:
    model, tok = load_base(EncoderConfig(str(tiny_llm_dir), device="cpu"))
    return model.eval(), tok


def _nll(model: object, prefix: list[int], tokens: list[int]) -> float:
    """Summed -log p(tokens | prefix) from the full-vocabulary logits of one unpadded forward."""
    ids = torch.tensor([prefix + tokens])
    with torch.no_grad():
        logp = torch.log_softmax(model(input_ids=ids).logits[0].float(), -1)  # type: ignore[operator]
    return -sum(float(logp[len(prefix) + k - 1, t]) for k, t in enumerate(tokens))


def test_perplexity_is_exp_of_the_brute_force_nll(model_tok: tuple) -> None:
    model, tok = model_tok
    texts = ["Great recipes.", "Astronomy news and physics articles, every month without fail.", "Ok"]
    got = text_perplexity(model, tok, texts, max_tokens=8, batch_size=2)
    toks = [tok(t, add_special_tokens=False)["input_ids"][:8] for t in texts]
    nll = sum(_nll(model, [tok.bos_token_id], t) for t in toks)
    n = sum(len(t) for t in toks)
    assert got["tokens"] == n and got["docs"] == 3
    assert got["perplexity"] == pytest.approx(np.exp(nll / n), rel=1e-4)


def test_explanation_loglik_is_the_mean_token_logprob(model_tok: tuple) -> None:
    model, tok = model_tok
    pairs = EXPLANATIONS[:2]
    got = explanation_loglik(model, tok, batch_size=2, pairs=pairs)
    per = []
    for prompt, reference in pairs:
        chat = render_chat(tok, "You are a recommender system.", prompt)
        p = tok(chat, add_special_tokens=False)["input_ids"]
        t = tok(reference, add_special_tokens=False)["input_ids"]
        per.append((_nll(model, p, t), len(t)))
    expected = -sum(s for s, _ in per) / sum(n for _, n in per)
    assert got["mean_token_loglik"] == pytest.approx(expected, rel=1e-4)
    np.testing.assert_allclose(got["per_prompt"], [-s / n for s, n in per], rtol=1e-4)


def test_heldout_texts_are_the_held_out_reviews(review_dataset: SequenceDataset, review_split: Split) -> None:
    test_only = heldout_review_texts(review_dataset, review_split, "test")
    both = heldout_review_texts(review_dataset, review_split, "valid_test")
    assert len(test_only) == review_split.n_users and len(both) == 2 * review_split.n_users
    assert any(LEAK_TEST in t for t in test_only) and not any(LEAK_VALID in t for t in test_only)
    assert any(LEAK_VALID in t for t in both)
    sample = heldout_review_texts(review_dataset, review_split, "valid_test", max_docs=4, seed=0)
    assert len(sample) == 4 and set(sample) <= set(both)


def test_language_report_without_reviews(model_tok: tuple) -> None:
    model, tok = model_tok
    report = language_report(model, tok, [], batch_size=4)
    assert report["review"] is None and len(report["explain"]["per_prompt"]) == len(EXPLANATIONS)
