"""Leave-one-out split (Kang & McAuley 2018, SASRec §IV-A): last item test, second-to-last validation."""

from __future__ import annotations

import numpy as np

from training.data.preprocess import MIN_SEQ_LEN
from training.data.types import SequenceDataset, Split


def leave_one_out(ds: SequenceDataset) -> Split:
    """Split every user's sequence as the `Split` docstring says; arrays are copies (int64).

    Raises ValueError for a sequence shorter than 3: it could not give a train, valid and test item.
    """
    train, valid_history, test_history = [], [], []
    valid_target = np.empty(ds.n_users, dtype=np.int64)
    test_target = np.empty(ds.n_users, dtype=np.int64)
    for u, seq in enumerate(ds.sequences):
        if len(seq) < MIN_SEQ_LEN:
            raise ValueError(
                f"user {u} ({ds.user_ids[u]}) has {len(seq)} events; leave-one-out needs {MIN_SEQ_LEN}"
            )
        seq = np.asarray(seq, dtype=np.int64)
        train.append(seq[:-2].copy())
        valid_history.append(seq[:-2].copy())
        valid_target[u] = seq[-2]
        test_history.append(seq[:-1].copy())
        test_target[u] = seq[-1]
    return Split(
        train=train,
        valid_history=valid_history,
        valid_target=valid_target,
        test_history=test_history,
        test_target=test_target,
        n_items=ds.n_items,
    )
