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


def cold_items(n_items: int, frac: float, seed: int) -> np.ndarray:
    """The sorted dense ids (1..n_items) held out as cold-start items: `frac` of the catalogue, uniformly."""
    if not 0.0 < frac < 1.0:
        raise ValueError(f"cold_item_frac must be in (0, 1), got {frac}")
    n = max(1, int(round(frac * n_items)))
    return np.sort(np.random.default_rng([seed, n_items]).choice(np.arange(1, n_items + 1), n, replace=False))


def cold_item_split(ds: SequenceDataset, frac: float, seed: int = 0) -> Split:
    """Leave-one-out after removing the cold items from everything but the test target.

    Each user's sequence keeps its last item (the test target, cold or not) and loses every cold item before
    it, so no model and no LLM stage sees a cold item in training, validation or a test history: a cold
    target can only be recovered through what stands in for it (P2Rec: the item's text through stage (b)).
    Users left with fewer than 3 items are dropped (the split's user indices then skip them). The cold items a
    user consumed before the test stay known to the test ranking (`Split.test_hidden`): they are masked like
    history items and never drawn as negatives. Validation during training ranks every catalogue item, the
    held-out ones included (their rows are untrained)."""
    cold = np.zeros(ds.n_items + 1, dtype=bool)
    cold[cold_items(ds.n_items, frac, seed)] = True
    kept, hidden = [], []
    for seq in ds.sequences:
        seq = np.asarray(seq, dtype=np.int64)
        head = seq[:-1][~cold[seq[:-1]]]
        if len(head) + 1 >= MIN_SEQ_LEN:
            kept.append(np.concatenate([head, seq[-1:]]))
            hidden.append(seq[:-1][cold[seq[:-1]]])
    filtered = SequenceDataset(ds.name, [], ds.items, kept, [np.zeros(len(s)) for s in kept])
    split = leave_one_out(filtered)
    split.unseen_items = np.flatnonzero(cold)
    split.test_hidden = hidden
    return split
