"""Test metrics per regime: the slices of test users where LLM-augmented item embeddings should matter.

P2Rec's claim (arXiv 2406.00333) is about sparse data and little text, which a dense benchmark's overall
figure hides. Every regime is a set of test users, ranked exactly as in `protocols.py` (same negatives:
they are drawn per user index), so a regime's figure is the overall figure restricted to those users:

- `all`: every test user.
- `long_tail`: the test target is outside the most popular `head_frac` of items (training interactions;
  ties broken by id), i.e. in the least popular 80 % by default.
- `short_history`: the user's training sequence is no longer than the `short_quantile` quantile of the
  lengths (0.25 by default; ties at the cut are included, so the share can exceed a quarter).
- `cold`: on a cold-start split (`data.cold_item_frac`), every user whose test target was held out of
  training (`Split.unseen_items`); on the usual split, targets without any training interaction.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from training.data.types import Split
from training.eval.protocols import (
    DEFAULT_PROTOCOL_SEED,
    ScoreFn,
    compute_metrics,
    get_protocol,
    ranks_by_protocol,
)

REGIMES = ("all", "long_tail", "short_history", "cold")
DEFINITION = 2  # bump when a regime's definition or scoring changes: cached regime results are recomputed


def train_popularity(split: Split) -> np.ndarray:
    """(n_items + 1,) training interactions per item (row 0 = padding, always 0)."""
    flat = np.concatenate([np.asarray(s, dtype=np.int64) for s in split.train]) if split.train else np.zeros(0, int)
    return np.bincount(flat, minlength=split.n_items + 1)[: split.n_items + 1]


def head_items(popularity: np.ndarray, head_frac: float) -> np.ndarray:
    """(n_items + 1,) bool: the `head_frac` most popular real items (stable by id among equal counts)."""
    n = len(popularity) - 1
    order = np.argsort(-popularity[1:], kind="stable") + 1
    head = np.zeros(n + 1, dtype=bool)
    head[order[: int(round(head_frac * n))]] = True
    return head


def regime_users(split: Split, head_frac: float = 0.2, short_quantile: float = 0.25) -> dict[str, np.ndarray]:
    """{regime: sorted test-user indices} for every name in REGIMES."""
    pop = train_popularity(split)
    target = np.asarray(split.test_target, dtype=np.int64)
    lengths = np.array([len(s) for s in split.train])
    cut = np.quantile(lengths, short_quantile) if len(lengths) else 0
    users = np.arange(split.n_users)
    return {
        "all": users,
        "long_tail": users[~head_items(pop, head_frac)[target]],
        "short_history": users[lengths <= cut],
        "cold": users[np.isin(target, split.unseen_items) if split.unseen_items is not None else pop[target] == 0],
    }


def regime_metrics(
    score_fn: ScoreFn,
    split: Split,
    protocols: Sequence[str],
    *,
    protocol_seed: int = DEFAULT_PROTOCOL_SEED,
    batch_size: int = 256,
    head_frac: float = 0.2,
    short_quantile: float = 0.25,
) -> dict[str, dict[str, Any]]:
    """{regime: {"n_users": n, protocol: {metric: mean}}} on the test stage; the model scores once.
    A regime without users has only "n_users": 0."""
    ranks = ranks_by_protocol(score_fn, split, protocols, "test", batch_size=batch_size, protocol_seed=protocol_seed)
    out: dict[str, dict[str, Any]] = {}
    for name, users in regime_users(split, head_frac, short_quantile).items():
        entry: dict[str, Any] = {"n_users": int(len(users))}
        if len(users):
            for p in protocols:
                entry[p] = compute_metrics(ranks[p][users], get_protocol(p).metrics)
        out[name] = entry
    return out
