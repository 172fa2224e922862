"""The one-prefill label scorer against brute force on a tiny random Llama with the real tokenizer."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from recbundle.rerank import RerankSpec
from training.data.types import SequenceDataset
from training.llm.core.model import EncoderConfig, load_base
from training.llm.core.ranker import LabelRanker, RankItem, title_loglik
from training.llm.core.soft_prompt import SoftPrompt


@pytest.fixture(scope="module")
def setup(tiny_llm_dir: Path, toy_dataset: SequenceDataset) -> tuple[object, LabelRanker, SoftPrompt]:
    model, tok = load_base(EncoderConfig(str(tiny_llm_dir), device="cpu"))
    titles = [None] + [m.title for m in toy_dataset.items]
    ranker = LabelRanker(tok, titles, RerankSpec(n_candidates=6, labels=list("ABCDEF"), history_items=4))
    soft = SoftPrompt.from_vocabulary(model.get_input_embeddings().weight, 5, seed=0)
    return model.eval(), ranker, soft


def _items() -> list[RankItem]:
    return [
        RankItem([1, 2, 3, 11], [5, 6, 7, 8, 9, 10], 2),
        RankItem([21, 22], [31, 32, 33, 34, 35, 36], 0),
        RankItem([4, 14, 24, 34, 1, 2, 3], [12, 13, 15, 16, 17, 18], 5),
    ]


@pytest.mark.parametrize("with_soft", [False, True])
def test_label_scores_equal_the_brute_force_label_likelihood(setup: tuple, with_soft: bool) -> None:
    model, ranker, soft = setup
    soft = soft if with_soft else None
    items = _items()
    got = ranker.scores(model, items, soft, batch_size=3)  # one padded batch of different lengths
    for row, item in enumerate(items):
        ids = torch.tensor([ranker.prompt_ids(item)])
        embeds = model.get_input_embeddings()(ids)
        if soft is not None:
            embeds = torch.cat([soft.vectors.unsqueeze(0), embeds], dim=1)
        with torch.no_grad():
            full = torch.log_softmax(model(inputs_embeds=embeds).logits[0, -1].double(), -1)  # whole vocabulary
        label_lp = full[ranker.label_ids]
        expected = (label_lp - torch.logsumexp(label_lp, 0)).numpy()  # renormalised over the labels
        np.testing.assert_allclose(got[row], expected, atol=2e-4)


def test_title_loglik_with_a_shared_cache_equals_separate_forwards(setup: tuple) -> None:
    from recbundle.rerank import item_title

    model, ranker, soft = setup
    item = _items()[0]
    got = title_loglik(model, ranker, item, soft)
    prompt = ranker.prompt_ids(item)
    for c, cand in enumerate(item.candidates):
        title = item_title(ranker.titles[cand], cand, ranker.spec.prompt.max_title_chars)
        t = ranker.tokenizer(title, add_special_tokens=False)["input_ids"]
        embeds = model.get_input_embeddings()(torch.tensor([prompt + t]))
        embeds = torch.cat([soft.vectors.unsqueeze(0), embeds], dim=1)
        with torch.no_grad():
            logp = torch.log_softmax(model(inputs_embeds=embeds).logits[0].double(), -1)
        start = soft.n_tokens + len(prompt)
        expected = sum(float(logp[start + j - 1, tok]) for j, tok in enumerate(t))
        assert got[c] == pytest.approx(expected, abs=1e-3)


def test_shuffling_and_reversing_keep_the_target_item() -> None:
    item = RankItem([1], [10, 11, 12, 13], 1)
    rng = np.random.default_rng(0)
    for _ in range(5):
        s = item.shuffled(rng)
        assert s.candidates[s.target] == 11 and sorted(s.candidates) == item.candidates
    r = item.reversed()
    assert r.candidates == [13, 12, 11, 10] and r.candidates[r.target] == 11


def test_labels_must_be_single_distinct_tokens(setup: tuple) -> None:
    _, ranker, _ = setup
    with pytest.raises(ValueError, match="one token"):
        LabelRanker(ranker.tokenizer, ranker.titles, RerankSpec(n_candidates=2, labels=["A", "Zebra crossing"]))


def test_fewer_candidates_are_normalised_over_the_labels_shown(setup: tuple) -> None:
    model, ranker, soft = setup
    short = RankItem([1, 2, 3], [5, 6, 7], 1)
    got = ranker.scores(model, [short, _items()[0]], soft, batch_size=2)[0]
    assert np.isfinite(got[:3]).all() and np.isneginf(got[3:]).all()
    assert np.exp(got[:3]).sum() == pytest.approx(1.0, abs=1e-5)
