"""Metric math against hand-computed tables."""

from __future__ import annotations

import math

import numpy as np
import pytest

from training.eval.metrics import hit_rate, mrr, ndcg, target_ranks

RANKS = np.array([0, 1, 4, 9, 10])
INV_LOG2 = {0: 1.0, 1: 0.6309297536, 4: 0.3868528072, 9: 0.2890648263}  # 1 / log2(rank + 2)


@pytest.mark.parametrize(
    ("k", "hr", "ndcg_value", "mrr_value"),
    [
        (1, 1 / 5, 1 / 5, 1 / 5),
        (2, 2 / 5, (1 + INV_LOG2[1]) / 5, (1 + 1 / 2) / 5),
        (5, 3 / 5, (1 + INV_LOG2[1] + INV_LOG2[4]) / 5, (1 + 1 / 2 + 1 / 5) / 5),
        (10, 4 / 5, (1 + INV_LOG2[1] + INV_LOG2[4] + INV_LOG2[9]) / 5, (1 + 1 / 2 + 1 / 5 + 1 / 10) / 5),
        (20, 1.0, (1 + INV_LOG2[1] + INV_LOG2[4] + INV_LOG2[9] + 1 / math.log2(12)) / 5, 0.3781818182),
    ],
)
def test_metric_table(k: int, hr: float, ndcg_value: float, mrr_value: float) -> None:
    assert hit_rate(RANKS, k) == pytest.approx(hr)
    assert ndcg(RANKS, k) == pytest.approx(ndcg_value, abs=1e-9)
    assert mrr(RANKS, k) == pytest.approx(mrr_value, abs=1e-9)


@pytest.mark.parametrize(
    ("ranks", "k", "expected"),
    [
        ([0], 10, (1.0, 1.0, 1.0)),
        ([10], 10, (0.0, 0.0, 0.0)),  # rank k is just outside the top k
        ([9], 10, (1.0, 0.2890648263, 0.1)),
        ([2, 2], 3, (1.0, 0.5, 1 / 3)),
    ],
)
def test_single_user_cases(ranks: list[int], k: int, expected: tuple[float, float, float]) -> None:
    r = np.array(ranks)
    assert (hit_rate(r, k), ndcg(r, k), mrr(r, k)) == pytest.approx(expected, abs=1e-9)


@pytest.mark.parametrize("bad", [np.array([]), np.array([-1, 0]), np.zeros((2, 2), dtype=int)])
def test_metrics_reject_bad_ranks(bad: np.ndarray) -> None:
    with pytest.raises(ValueError):
        hit_rate(bad, 10)


def test_metrics_reject_bad_k() -> None:
    with pytest.raises(ValueError):
        ndcg(np.array([0]), 0)


NEG_INF = -np.inf


@pytest.mark.parametrize(
    ("scores", "target_col", "valid", "expected"),
    [
        ([[0.9, 0.1, 0.5]], [0], None, [0]),
        ([[0.9, 0.1, 0.5]], [1], None, [2]),
        ([[0.9, 0.1, 0.5]], [2], None, [1]),
        ([[0.5, 0.5, 0.5]], [0], None, [2]),  # constant model: worst rank, not best
        ([[1.0, 0.5, 0.5, 0.2]], [1], None, [2]),  # one above + one tie
        ([[0.3, 0.3, 0.9, 0.3]], [3], None, [3]),
        ([[NEG_INF, NEG_INF, 0.0]], [0], None, [2]),
        ([[0.1, 0.9, 0.5]], [0], [[True, False, True]], [1]),  # masked column never counts
        ([[0.1, 0.9, 0.5]], [0], [[False, False, False]], [0]),  # target kept even if masked
        ([[0.2, 0.1], [0.1, 0.2]], [0, 0], None, [0, 1]),
    ],
)
def test_target_ranks_table(
    scores: list[list[float]], target_col: list[int], valid: list[list[bool]] | None, expected: list[int]
) -> None:
    mask = None if valid is None else np.array(valid)
    ranks = target_ranks(np.array(scores), np.array(target_col), mask)
    np.testing.assert_array_equal(ranks, expected)
    assert ranks.dtype == np.int64


@pytest.mark.parametrize(
    "scores",
    [
        [[np.nan, 0.1, 0.5]],  # NaN target
        [[0.9, np.nan, 0.5]],  # NaN elsewhere would otherwise compare False and look like a hit
        [[0.9, 0.1], [np.nan, np.nan]],
    ],
)
def test_target_ranks_rejects_nan(scores: list[list[float]]) -> None:
    s = np.array(scores)
    with pytest.raises(ValueError, match="NaN"):
        target_ranks(s, np.zeros(len(s), dtype=int))


def test_target_ranks_rejects_bad_shapes() -> None:
    with pytest.raises(ValueError):
        target_ranks(np.zeros((2, 3)), np.zeros(3, dtype=int))
