"""preprocess on hand-made tables (k-core, ordering, remap, filters) and invariants on the shared data."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from tests.training.data.conftest import raw_dataset, shared_folder
from training.data import (
    DATASETS,
    PAD,
    DataError,
    Interaction,
    RawDataset,
    SequenceDataset,
    preprocess,
    read_dataset,
)


def _raw_sequences(ds: SequenceDataset) -> dict[str, list[str]]:
    return {
        u: [ds.items[i - 1].raw_id for i in seq] for u, seq in zip(ds.user_ids, ds.sequences, strict=True)
    }


def test_k_core_is_iterative() -> None:
    # A, B, C x {1, 2, 3} survive. Item 4 (D, E) has 2 < 3 events and 5, 6 one each: dropped first
    # (4 events); then D keeps 2 and E 0 events, so D goes (2 events) in the second round.
    rows = [(u, i, t) for t, (u, i) in enumerate((u, i) for u in "ABC" for i in "123")]
    rows += [("D", "1", 20), ("D", "2", 21), ("D", "4", 22), ("E", "4", 23), ("E", "5", 24), ("E", "6", 25)]
    ds = preprocess(raw_dataset(rows), k_core=3)
    assert ds.user_ids == ["A", "B", "C"]
    assert sorted(m.raw_id for m in ds.items) == ["1", "2", "3"]
    assert (ds.stats["dropped_kcore_item"], ds.stats["dropped_kcore_user"]) == (4, 2)
    assert ds.stats["interactions"] == 9


def test_k_core_disabled_still_drops_users_below_three() -> None:
    rows = [("A", "1", 1), ("A", "2", 2), ("A", "3", 3), ("B", "1", 4), ("B", "9", 5)]
    ds = preprocess(raw_dataset(rows), k_core=1)
    assert ds.user_ids == ["A"] and ds.n_items == 3  # item 9 is gone with B, item rule is off


def test_order_tie_break_and_dense_ids() -> None:
    # File order: user 10 first; user 2's events out of time order, with a 3-way tie at t=5.
    rows = [
        ("10", "x", 1),
        ("10", "y", 2),
        ("10", "z", 3),
        ("2", "c", 5),
        ("2", "a", 1),
        ("2", "b", 5),
        ("2", "d", 5),
    ]
    ds = preprocess(raw_dataset(rows), k_core=0)
    assert ds.user_ids == ["2", "10"]  # numeric order of integer ids
    assert _raw_sequences(ds) == {"2": ["a", "c", "b", "d"], "10": ["x", "y", "z"]}  # tie: file order
    assert [m.raw_id for m in ds.items] == ["a", "c", "b", "d", "x", "y", "z"]  # first appearance
    assert [s.tolist() for s in ds.sequences] == [[1, 2, 3, 4], [5, 6, 7]]
    assert [t.tolist() for t in ds.timestamps] == [[1, 5, 5, 5], [1, 2, 3]]
    assert ds.stats["timestamp_ties"] == 2
    again = preprocess(raw_dataset(rows), k_core=0)
    assert [s.tolist() for s in again.sequences] == [s.tolist() for s in ds.sequences]


def test_duplicates_keep_first_in_time_and_min_rating() -> None:
    events = [
        Interaction("u", "a", 9, rating=5.0),
        Interaction("u", "b", 2, rating=2.0),
        Interaction("u", "c", 3, rating=4.0),
        Interaction("u", "a", 1, rating=4.0),  # earlier repeat of (u, a): this one is kept
        Interaction("u", "d", 4, rating=None),
        Interaction("u", "e", 5, rating=4.5),
    ]
    raw = RawDataset("t", events, {})
    ds = preprocess(raw, k_core=0, min_rating=4.0)
    assert _raw_sequences(ds) == {"u": ["a", "c", "e"]}
    assert ds.stats["dropped_min_rating"] == 2 and ds.stats["dropped_duplicate"] == 1
    assert ds.stats["items_without_meta"] == 3 and ds.items[0].raw_id == "a"


def test_max_users_before_k_core_and_reviews() -> None:
    rows = [(u, i, t) for t, (u, i) in enumerate((u, i) for u in ("3", "1", "2") for i in "abc")]
    raw = raw_dataset(rows)
    raw.interactions[0] = Interaction("3", "a", 0, review="great", summary=None)
    raw.interactions[3] = Interaction("1", "a", 3, review=None, summary="ok")
    ds = preprocess(raw, k_core=2, max_users=2)
    assert ds.user_ids == ["1", "2"] and ds.stats["dropped_max_users"] == 3
    assert ds.reviews == {(0, 1): ("", "ok")}


@pytest.mark.parametrize("name", ["ml-100k", "amazon-magazine", "amazon-giftcards"])
def test_shared_datasets_five_core_invariants(name: str, ml100k_raw: RawDataset) -> None:
    raw = ml100k_raw if name == "ml-100k" else read_dataset(name, shared_folder(DATASETS[name].folder))
    ds = preprocess(raw, k_core=5)
    flat = np.concatenate(ds.sequences)
    assert PAD not in flat and flat.min() == 1 and flat.max() == ds.n_items
    assert len(np.unique(flat)) == ds.n_items
    assert min(len(s) for s in ds.sequences) >= 5 and min(Counter(flat.tolist()).values()) >= 5
    assert all((np.diff(t) >= 0).all() for t in ds.timestamps)
    expected = {
        "ml-100k": (943, 1349, 99_287),
        "amazon-magazine": (274, 124, 1883),
        "amazon-giftcards": (453, 147, 2941),
    }
    assert (ds.n_users, ds.n_items, len(flat)) == expected[name]


def test_ml100k_raw_stats_match_readme(ml100k_raw: RawDataset) -> None:
    ds = preprocess(ml100k_raw, k_core=0)
    assert (ds.n_users, ds.n_items, ds.stats["interactions"]) == (943, 1682, 100_000)
    assert ds.stats["timestamp_ties"] == 50_561  # README: rows sharing a timestamp with an earlier one
    assert round(ds.stats["mean_seq_len"], 2) == 106.04 and ds.stats["median_seq_len"] == 65


def test_nothing_left_raises() -> None:
    with pytest.raises(DataError, match="no events left"):
        preprocess(raw_dataset([("a", "x", 1), ("a", "y", 2), ("b", "x", 3)]), k_core=5)
