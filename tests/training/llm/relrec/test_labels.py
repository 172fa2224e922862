"""Pseudo-labels: training-period reviews only, deterministic, metadata fallback, JSON round trip."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tests.training.llm.relrec.conftest import LEAK_TEST, LEAK_VALID
from training.data.split import leave_one_out
from training.data.types import ItemMeta, SequenceDataset, Split
from training.llm.relrec.labels import (
    LabelConfig,
    PseudoLabels,
    build_labels,
    item_era,
    phrases,
    review_text,
    training_reviews,
)

ML100K = Path("/work/shared/data/ml-100k")


def _all_text(labels: PseudoLabels) -> str:
    return " ".join([*labels.item.values(), *labels.user.values()]).lower()


def test_training_reviews_keep_only_training_events(
    review_dataset: SequenceDataset, review_split: Split
) -> None:
    kept = training_reviews(review_dataset, review_split)
    expected = {(u, int(i)) for u, seq in enumerate(review_split.train) for i in seq}
    assert set(kept) == expected
    assert all(LEAK_TEST not in t and LEAK_VALID not in t for t, _ in kept.values())


def test_a_reconsumed_held_out_item_is_excluded() -> None:
    """Item 1 is both a training event and the test target: its single (u, 1) review may be the test one."""
    ds = SequenceDataset(
        "recur",
        ["u"],
        [ItemMeta(raw_id=str(i)) for i in (1, 2, 3)],
        [np.array([1, 2, 3, 1], dtype=np.int64)],
        [np.arange(4, dtype=np.int64)],
        {(0, 1): ("held out?", ""), (0, 2): ("fine", "")},
    )
    assert set(training_reviews(ds, leave_one_out(ds))) == {(0, 2)}


@pytest.mark.parametrize("extractor", ["yake", "frequent"])
def test_held_out_reviews_never_reach_a_label(
    review_dataset: SequenceDataset, review_split: Split, extractor: str
) -> None:
    labels = build_labels(review_dataset, review_split, LabelConfig(extractor=extractor))  # type: ignore[arg-type]
    assert labels.source == "reviews"
    assert set(labels.item) == {1, 2, 3, 4} and set(labels.user) == set(range(6))
    assert LEAK_TEST not in _all_text(labels) and LEAK_VALID not in _all_text(labels)


def test_item_labels_name_the_item_aspects(review_dataset: SequenceDataset, review_split: Split) -> None:
    labels = build_labels(review_dataset, review_split, LabelConfig(extractor="yake"))
    assert "recipes" in labels.item[1] and "astronomy" in labels.item[2]
    # words every document shares ("reader", "layout") are generic and give way to specific ones
    assert all("layout" not in p for p in phrases(labels.item[3]))
    assert all(1 <= len(phrases(v)) <= 4 for v in labels.item.values())


def test_labels_are_deterministic_and_round_trip(
    review_dataset: SequenceDataset, review_split: Split, tmp_path: Path
) -> None:
    a = build_labels(review_dataset, review_split, LabelConfig())
    b = build_labels(review_dataset, review_split, LabelConfig())
    assert a == b
    a.save(tmp_path / "labels.json")
    back = PseudoLabels.load(tmp_path / "labels.json")
    assert back == a and all(isinstance(k, int) for k in back.item)


def test_review_text_drops_star_titles_and_entities() -> None:
    assert review_text(("Fun &amp; cheap", "Five Stars")) == "Fun & cheap"
    assert review_text(("Fun", "Good value")) == "Good value. Fun"


def test_item_era() -> None:
    assert item_era("Reservoir Dogs (1992)") == "1990s"
    assert item_era("No year", "01-Jan-1974") == "1970s"
    assert item_era("No year") is None


def test_metadata_fallback_uses_training_history(movie_dataset: SequenceDataset) -> None:
    split = leave_one_out(movie_dataset)
    labels = build_labels(movie_dataset, split, LabelConfig())
    assert labels.source == "metadata"
    assert phrases(labels.item[2]) == ["Drama", "1990s", "sad story"]
    # every user's Western films are held out, so no user label may name the genre or the 1950s
    assert labels.user[0] == "Comedy; Drama; 1990s"  # Funny Farm (1988), Sad Story (1995), Laugh Riot (1994)
    assert all("Western" not in v and "1950s" not in v for v in labels.user.values())


@pytest.mark.skipif(not ML100K.exists(), reason="MovieLens-100K is not in /work/shared/data")
def test_metadata_fallback_on_ml100k() -> None:
    from training.config import load_config
    from training.pipeline import prepare_stage

    ds, split = prepare_stage(load_config("ml-100k"))
    labels = build_labels(ds, split, LabelConfig())
    assert labels.source == "metadata" and labels.stats["item_coverage"] == 1.0
    assert len(labels.user) == ds.n_users
    toy_story = next(i for i, m in enumerate(ds.items, start=1) if m.title == "Toy Story (1995)")
    assert phrases(labels.item[toy_story])[-2:] == ["1990s", "toy story"]
    assert "Animation" in phrases(labels.item[toy_story])
