from __future__ import annotations

import numpy as np
import pytest

from training.data.types import Split


def make_split(sequences: list[list[int]], n_items: int) -> Split:
    """Leave-one-out split of explicit sequences (last = test, second-to-last = validation)."""
    seqs = [np.asarray(s, dtype=np.int64) for s in sequences]
    return Split(
        train=[s[:-2] for s in seqs],
        valid_history=[s[:-2] for s in seqs],
        valid_target=np.array([s[-2] for s in seqs], dtype=np.int64),
        test_history=[s[:-1] for s in seqs],
        test_target=np.array([s[-1] for s in seqs], dtype=np.int64),
        n_items=n_items,
    )


def random_split(n_users: int, n_items: int, min_len: int, max_len: int, seed: int = 0) -> Split:
    rng = np.random.default_rng(seed)
    sequences = [
        rng.choice(np.arange(1, n_items + 1), size=int(rng.integers(min_len, max_len + 1)), replace=False)
        for _ in range(n_users)
    ]
    return make_split([s.tolist() for s in sequences], n_items)


@pytest.fixture
def split() -> Split:
    """12 users, 200 items: enough never-seen items for sampled100."""
    return random_split(n_users=12, n_items=200, min_len=5, max_len=40)
