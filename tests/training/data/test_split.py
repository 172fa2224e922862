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
