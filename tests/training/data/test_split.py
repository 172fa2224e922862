"""leave_one_out against hand-written tables (Split docstring: SASRec protocol)."""

from __future__ import annotations

import numpy as np
import pytest

from training.data import ItemMeta, SequenceDataset, leave_one_out


def _ds(seqs: list[list[int]]) -> SequenceDataset:
    n_items = max(max(s) for s in seqs)
    return SequenceDataset(
        name="t",
        user_ids=[str(u) for u in range(len(seqs))],
        items=[ItemMeta(raw_id=str(i)) for i in range(1, n_items + 1)],
        sequences=[np.asarray(s, dtype=np.int64) for s in seqs],
        timestamps=[np.arange(len(s), dtype=np.int64) for s in seqs],
    )


def test_leave_one_out_table() -> None:
    split = leave_one_out(_ds([[1, 2, 3, 4], [5, 3, 6]]))
    assert [t.tolist() for t in split.train] == [[1, 2], [5]]
    assert [h.tolist() for h in split.valid_history] == [[1, 2], [5]]
    assert split.valid_target.tolist() == [3, 3]
    assert [h.tolist() for h in split.test_history] == [[1, 2, 3], [5, 3]]
    assert split.test_target.tolist() == [4, 6]
    assert split.n_items == 6 and split.n_users == 2
    assert split.valid_target.dtype == np.int64 and split.train[0].dtype == np.int64


def test_split_arrays_are_copies() -> None:
    ds = _ds([[1, 2, 3]])
    split = leave_one_out(ds)
    split.train[0][0] = 99
    assert ds.sequences[0].tolist() == [1, 2, 3]


def test_too_short_sequence_raises() -> None:
    with pytest.raises(ValueError, match="needs 3"):
        leave_one_out(_ds([[1, 2, 3], [1, 2]]))


def test_cold_item_split_keeps_cold_items_only_as_test_targets() -> None:
    from training.data.split import cold_item_split, cold_items

    rng = np.random.default_rng(1)
    ds = _ds([rng.choice(np.arange(1, 41), size=int(rng.integers(5, 15)), replace=False).tolist() for _ in range(60)])
    cold = set(cold_items(ds.n_items, 0.2, seed=3).tolist())
    assert len(cold) == 8 and cold == set(cold_items(ds.n_items, 0.2, seed=3).tolist())  # deterministic
    assert cold != set(cold_items(ds.n_items, 0.2, seed=4).tolist())
    split = cold_item_split(ds, 0.2, seed=3)
    seen = {int(i) for seqs in (split.train, split.valid_history, split.test_history) for s in seqs for i in s}
    seen |= {int(i) for i in split.valid_target}
    assert not seen & cold
    assert {int(t) for t in split.test_target} & cold  # some users now ask for a cold item
    # a user's test target is their last event whether cold or not; the rest keep their order
    kept = [s for s in ds.sequences if len([i for i in s[:-1] if int(i) not in cold]) + 1 >= 3]
    assert split.n_users == len(kept)
    for u, seq in enumerate(kept):
        assert split.test_target[u] == seq[-1]
        np.testing.assert_array_equal(split.test_history[u], [i for i in seq[:-1] if int(i) not in cold])
        np.testing.assert_array_equal(split.test_hidden[u], [i for i in seq[:-1] if int(i) in cold])
    np.testing.assert_array_equal(split.unseen_items, sorted(cold))
    with pytest.raises(ValueError, match="cold_item_frac"):
        cold_items(40, 0.0, 0)
