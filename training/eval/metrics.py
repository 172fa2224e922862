"""Pure ranking metrics for next-item prediction with one relevant item per user.

Every metric takes the 0-based rank of the user's target among its candidates (rank 0 = top) and
returns the mean over users. With a single relevant item, HR@k equals Recall@k, NDCG@k reduces to
1 / log2(rank + 2) (the ideal DCG is 1), and MRR@k is the truncated reciprocal rank, as in RecBole's
`recbole/evaluator/metrics.py` and Kang & McAuley (2018), SASRec section IV.
"""

from __future__ import annotations

import numpy as np


def _check(ranks: np.ndarray, k: int) -> np.ndarray:
    ranks = np.asarray(ranks)
    if ranks.ndim != 1 or ranks.size == 0:
        raise ValueError(f"ranks must be a non-empty 1-D array, got shape {ranks.shape}")
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    if (ranks < 0).any():
        raise ValueError("ranks are 0-based and must be >= 0")
    return ranks


def hit_rate(ranks: np.ndarray, k: int) -> float:
    """HR@k: share of users whose target is in the top k."""
    ranks = _check(ranks, k)
    return float(np.mean(ranks < k))


def ndcg(ranks: np.ndarray, k: int) -> float:
    """NDCG@k with one relevant item: 1 / log2(rank + 2) if rank < k else 0."""
    ranks = _check(ranks, k)
    gains = np.where(ranks < k, 1.0 / np.log2(ranks.astype(np.float64) + 2.0), 0.0)
    return float(np.mean(gains))


def mrr(ranks: np.ndarray, k: int) -> float:
    """MRR@k: 1 / (rank + 1) if rank < k else 0."""
    ranks = _check(ranks, k)
    return float(np.mean(np.where(ranks < k, 1.0 / (ranks.astype(np.float64) + 1.0), 0.0)))


def target_ranks(scores: np.ndarray, target_col: np.ndarray, valid: np.ndarray | None = None) -> np.ndarray:
    """0-based rank of each row's target column, ties broken pessimistically.

    rank = #(scores > target) + #(other scores == target): a model that scores everything alike gets
    the worst rank instead of a lucky one (optimistic ties inflate constant or collapsed models).
    `valid` (B, C) bool, where given, drops columns from the comparison (masked history items, padding
    of short candidate lists); the target column is always kept. Any NaN in `scores` raises ValueError
    so a numerical bug can never be counted as hits.

    scores: (B, C) float; target_col: (B,) int; returns (B,) int64.
    """
    scores = np.asarray(scores)
    target_col = np.asarray(target_col)
    if scores.ndim != 2 or target_col.shape != (scores.shape[0],):
        raise ValueError(f"need scores (B, C) and target_col (B,), got {scores.shape} and {target_col.shape}")
    nan_rows = np.flatnonzero(np.isnan(scores).any(axis=1))
    if nan_rows.size:
        raise ValueError(f"NaN scores in {nan_rows.size} rows (first rows: {nan_rows[:5].tolist()})")
    rows = np.arange(scores.shape[0])
    target = scores[rows, target_col][:, None]  # (B, 1)
    beats = scores >= target  # (B, C); includes the target itself once
    if valid is not None:
        if valid.shape != scores.shape:
            raise ValueError(f"valid must have the shape of scores {scores.shape}, got {valid.shape}")
        beats &= valid
        beats[rows, target_col] = True
    return beats.sum(axis=1).astype(np.int64) - 1
