"""Candidate determinism, protocol correctness and speed."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

import numpy as np
import pytest

from training.data.types import Split
from training.eval.protocols import PROTOCOLS, build_candidates, evaluate, evaluate_all, ranks_by_protocol

from .conftest import make_split, random_split

SAMPLED = ("sampled100", "cand20")
ScoreFn = Callable[[list[np.ndarray]], np.ndarray]


def oracle(split: Split) -> ScoreFn:
    """Scores the next item of a known history 1, everything else 0."""
    nxt = {tuple(h.tolist()): int(t) for h, t in zip(split.valid_history, split.valid_target, strict=True)}
    nxt |= {tuple(h.tolist()): int(t) for h, t in zip(split.test_history, split.test_target, strict=True)}

    def score(histories: list[np.ndarray]) -> np.ndarray:
        scores = np.zeros((len(histories), split.n_items + 1))
        scores[:, 0] = 1e9  # the padding column must never be ranked
        for row, h in enumerate(histories):
            scores[row, nxt[tuple(h.tolist())]] = 1.0
        return scores

    return score


def constant(split: Split) -> ScoreFn:
    return lambda histories: np.zeros((len(histories), split.n_items + 1), dtype=np.float32)


def history_seeded(split: Split, salt: int) -> ScoreFn:
    """Random scores that depend only on the history (not on the batch it arrives in)."""

    def score(histories: list[np.ndarray]) -> np.ndarray:
        rows = [
            np.random.default_rng([salt, len(h), *h.tolist()]).random(split.n_items + 1) for h in histories
        ]
        return np.stack(rows)

    return score


@pytest.mark.parametrize("stage", ["valid", "test"])
@pytest.mark.parametrize("protocol", SAMPLED)
def test_candidates_are_valid(split: Split, protocol: str, stage: str) -> None:
    cands = build_candidates(split, protocol, stage)  # type: ignore[arg-type]
    assert cands is not None
    assert cands.shape == (split.n_users, PROTOCOLS[protocol].n_negatives + 1)  # type: ignore[operator]
    targets = split.valid_target if stage == "valid" else split.test_target
    np.testing.assert_array_equal(cands[:, 0], targets)
    for u, row in enumerate(cands):
        assert len(np.unique(row)) == len(row)
        assert row.min() >= 1 and row.max() <= split.n_items
        whole_sequence = set(split.test_history[u].tolist()) | {int(split.test_target[u])}
        assert whole_sequence.isdisjoint(row[1:].tolist())


def test_full_has_no_candidates(split: Split) -> None:
    assert build_candidates(split, "full", "test") is None


@pytest.mark.parametrize("protocol", SAMPLED)
def test_candidates_are_deterministic(split: Split, protocol: str) -> None:
    first = build_candidates(split, protocol, "test")
    assert first is not None
    np.testing.assert_array_equal(first, build_candidates(split, protocol, "test"))
    subset = np.array([7, 2, 5])
    np.testing.assert_array_equal(first[subset], build_candidates(split, protocol, "test", users=subset))
    other_seed = build_candidates(split, protocol, "test", protocol_seed=7)
    other_stage = build_candidates(split, protocol, "valid")
    assert other_seed is not None and other_stage is not None
    assert not np.array_equal(first[:, 1:], other_seed[:, 1:])
    assert not np.array_equal(first[:, 1:], other_stage[:, 1:])


@pytest.mark.parametrize("protocol", [*SAMPLED, "full"])
def test_ranks_independent_of_batch_size(split: Split, protocol: str) -> None:
    fn = history_seeded(split, salt=1)
    ranks = [ranks_by_protocol(fn, split, [protocol], "test", batch_size=b)[protocol] for b in (1, 5, 256)]
    np.testing.assert_array_equal(ranks[0], ranks[1])
    np.testing.assert_array_equal(ranks[0], ranks[2])


@pytest.mark.parametrize("protocol", SAMPLED)
@pytest.mark.parametrize("salt", [1, 2])
def test_every_score_fn_is_ranked_on_the_same_candidates(split: Split, protocol: str, salt: int) -> None:
    fn = history_seeded(split, salt)
    cands = build_candidates(split, protocol, "test")
    assert cands is not None
    scores = fn(split.test_history)
    picked = np.take_along_axis(scores, cands, axis=1)
    expected = (picked[:, 1:] >= picked[:, :1]).sum(axis=1)
    np.testing.assert_array_equal(
        ranks_by_protocol(fn, split, [protocol], "test", batch_size=5)[protocol], expected
    )


@pytest.mark.parametrize("stage", ["valid", "test"])
@pytest.mark.parametrize("protocol", list(PROTOCOLS))
def test_oracle_is_perfect(split: Split, protocol: str, stage: str) -> None:
    result = evaluate(oracle(split), split, protocol, stage, batch_size=5)  # type: ignore[arg-type]
    for metric in PROTOCOLS[protocol].metrics:
        assert result[metric] == 1.0, metric


def test_constant_model_gets_worst_rank(split: Split) -> None:
    ranks = ranks_by_protocol(constant(split), split, list(PROTOCOLS), "test")
    np.testing.assert_array_equal(ranks["sampled100"], 100)
    np.testing.assert_array_equal(ranks["cand20"], 19)
    masked = np.array(
        [len(set(h.tolist()) - {int(t)}) for h, t in zip(split.test_history, split.test_target, strict=True)]
    )
    np.testing.assert_array_equal(ranks["full"], split.n_items - 1 - masked)
    assert evaluate(constant(split), split, "cand20", "test")["MRR@20"] == pytest.approx(1 / 20)


def history_first(split: Split, targets: np.ndarray) -> ScoreFn:
    """History items 100, the target 50, the rest 0: only history masking puts the target on top."""
    by_history = {tuple(h.tolist()): int(t) for h, t in zip(split.test_history, targets, strict=True)}

    def score(histories: list[np.ndarray]) -> np.ndarray:
        scores = np.zeros((len(histories), split.n_items + 1))
        for row, h in enumerate(histories):
            scores[row, h] = 100.0
            scores[row, by_history[tuple(h.tolist())]] = 50.0
        return scores

    return score


def test_full_masks_history(split: Split) -> None:
    fn = history_first(split, split.test_target)
    assert evaluate(fn, split, "full", "test")["HR@1"] == 1.0
    unmasked = evaluate(fn, split, "full", "test", mask_history=False)
    assert unmasked["HR@1"] == 0.0
    assert unmasked["mask_history"] == 0.0


def test_full_keeps_a_repeated_target_rankable() -> None:
    # user 0 re-consumes item 3 at test time; the history mask must not hide the target itself
    split = make_split([[1, 3, 2, 5, 3], [4, 6, 7, 8, 9]], n_items=10)
    fn = history_first(split, split.test_target)
    ranks = ranks_by_protocol(fn, split, ["full"], "test")["full"]
    np.testing.assert_array_equal(ranks, [0, 0])


def test_result_keys(split: Split) -> None:
    results = evaluate_all(oracle(split), split)
    assert list(results) == ["full", "sampled100", "cand20"]
    assert set(results["full"]) == {
        "HR@1", "HR@5", "HR@10", "HR@20", "NDCG@5", "NDCG@10", "NDCG@20", "MRR@10", "mask_history",
    }  # fmt: skip
    assert results["full"]["mask_history"] == 1.0
    assert set(results["sampled100"]) == set(PROTOCOLS["full"].metrics)
    assert set(results["cand20"]) == {"HR@1", "HR@5", "HR@10", "NDCG@5", "NDCG@10", "MRR@20"}


def test_evaluate_all_scores_each_batch_once(split: Split) -> None:
    calls: list[int] = []
    inner = oracle(split)

    def counting(histories: list[np.ndarray]) -> np.ndarray:
        calls.append(len(histories))
        return inner(histories)

    evaluate_all(counting, split, batch_size=5)
    assert sum(calls) == split.n_users


def test_users_subset(split: Split) -> None:
    fn = history_seeded(split, salt=3)
    users = np.array([3, 0, 11])
    full = ranks_by_protocol(fn, split, list(PROTOCOLS), "valid")
    sub = ranks_by_protocol(fn, split, list(PROTOCOLS), "valid", users=users)
    for protocol in PROTOCOLS:
        np.testing.assert_array_equal(sub[protocol], full[protocol][users])


def test_tiny_catalogue_uses_all_negatives(caplog: pytest.LogCaptureFixture) -> None:
    split = make_split([[1, 2, 3, 4], [5, 6, 7, 8]], n_items=10)  # 6 never-seen items per user
    with caplog.at_level(logging.WARNING):
        cands = build_candidates(split, "cand20", "test")
    assert "fewer than 19" in caplog.text
    assert cands is not None and cands.shape == (2, 20)
    assert (cands[:, 1:7] > 0).all() and (cands[:, 7:] == 0).all()
    ranks = ranks_by_protocol(constant(split), split, ["cand20"], "test")["cand20"]
    np.testing.assert_array_equal(ranks, [6, 6])  # padding never counts as a competitor


def test_nan_scores_raise(split: Split) -> None:
    def nan_fn(histories: list[np.ndarray]) -> np.ndarray:
        scores = np.zeros((len(histories), split.n_items + 1))
        scores[:, 5] = np.nan
        return scores

    for protocol in PROTOCOLS:
        with pytest.raises(ValueError, match="NaN"):
            evaluate(nan_fn, split, protocol, "test")


def test_bad_arguments(split: Split) -> None:
    with pytest.raises(ValueError, match="score_fn must return"):
        evaluate(lambda h: np.zeros((len(h), split.n_items)), split, "full", "test")
    with pytest.raises(ValueError, match="unknown protocol"):
        evaluate(constant(split), split, "sampled50", "test")
    with pytest.raises(ValueError, match="stage"):
        evaluate(constant(split), split, "full", "train")  # type: ignore[arg-type]


def test_ml100k_sized_evaluation_is_fast() -> None:
    split = random_split(n_users=943, n_items=1683, min_len=20, max_len=400, seed=1)
    table = np.random.default_rng(0).random((split.n_users, split.n_items + 1)).astype(np.float32)
    cursor = iter(range(0, 10**9, 256))

    def lookup(histories: list[np.ndarray]) -> np.ndarray:  # stands in for a model whose scores are ready
        start = next(cursor) % split.n_users
        return table[start : start + len(histories)]

    for protocol in PROTOCOLS:
        cursor = iter(range(0, split.n_users, 256))
        t0 = time.perf_counter()
        evaluate(lookup, split, protocol, "test")
        elapsed = time.perf_counter() - t0
        assert elapsed < 1.0, f"{protocol} took {elapsed:.2f}s"
