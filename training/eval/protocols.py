"""The three named evaluation protocols and the loop that scores a model under them.

- `full`: rank the target against every item 1..n_items (padding 0 is never ranked). The user's history
  items are masked, except the target itself (repeat consumption stays rankable). This follows SASRec
  (Kang & McAuley 2018) and RecBole's full-sort mode; the choice is reported as `mask_history` in the
  result (1.0 = masked). Masked items are dropped from the comparison, which equals scoring them -inf
  except that they never tie with a target a model itself scored -inf.
- `sampled100`: target + 100 negatives drawn uniformly without replacement from items the user never
  interacted with (the whole sequence, test item included), as LLM-ESR (Liu et al. 2024) and LLMEmb.
- `cand20`: target + 19 such negatives, the candidate-list setting of LLaRA (Liao et al. 2024) and DELRec.

Negatives come from `np.random.default_rng([protocol_seed, stage_code, user_index])`, so they depend on
neither batching, nor the model, nor its training seed: every model is ranked against the same lists.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

from training.data.types import PAD, Split
from training.eval.metrics import hit_rate, mrr, ndcg, target_ranks

logger = logging.getLogger(__name__)

Stage = Literal["valid", "test"]
ScoreFn = Callable[[list[np.ndarray]], np.ndarray]  # histories -> (B, n_items + 1) scores, column 0 = padding

STAGE_CODES: dict[str, int] = {"valid": 0, "test": 1}
DEFAULT_PROTOCOL_SEED = 2024

_RANKING_METRICS = ("HR@1", "HR@5", "HR@10", "HR@20", "NDCG@5", "NDCG@10", "NDCG@20", "MRR@10")
_METRIC_FNS: dict[str, Callable[[np.ndarray, int], float]] = {"HR": hit_rate, "NDCG": ndcg, "MRR": mrr}


@dataclass(frozen=True)
class ProtocolSpec:
    name: str
    n_negatives: int | None  # None = rank the whole catalogue
    metrics: tuple[str, ...]  # "HR@10" style names, computed in this order
    description: str


PROTOCOLS: dict[str, ProtocolSpec] = {
    "full": ProtocolSpec(
        "full", None, _RANKING_METRICS, "target ranked against all items; history items masked"
    ),
    "sampled100": ProtocolSpec(
        "sampled100", 100, _RANKING_METRICS, "target + 100 uniform negatives outside the user's sequence"
    ),
    "cand20": ProtocolSpec(
        "cand20",
        19,
        ("HR@1", "HR@5", "HR@10", "NDCG@5", "NDCG@10", "MRR@20"),
        "target + 19 uniform negatives outside the user's sequence (20 candidates)",
    ),
}


def get_protocol(protocol: str) -> ProtocolSpec:
    if protocol not in PROTOCOLS:
        raise ValueError(f"unknown protocol {protocol!r}; choose one of {sorted(PROTOCOLS)}")
    return PROTOCOLS[protocol]


def compute_metrics(ranks: np.ndarray, metrics: Sequence[str]) -> dict[str, float]:
    """Metric names such as "HR@10", "NDCG@5", "MRR@20" -> mean value over users."""
    out: dict[str, float] = {}
    for name in metrics:
        kind, _, k = name.partition("@")
        out[name] = _METRIC_FNS[kind](ranks, int(k))
    return out


def _stage_data(split: Split, stage: Stage) -> tuple[list[np.ndarray], np.ndarray]:
    if stage == "valid":
        return split.valid_history, np.asarray(split.valid_target)
    if stage == "test":
        return split.test_history, np.asarray(split.test_target)
    raise ValueError(f"stage must be 'valid' or 'test', got {stage!r}")


def _user_indices(split: Split, users: np.ndarray | None) -> np.ndarray:
    if users is None:
        return np.arange(split.n_users)
    users = np.asarray(users, dtype=np.int64)
    if users.ndim != 1 or (users < 0).any() or (users >= split.n_users).any():
        raise ValueError(f"users must be a 1-D array of indices in [0, {split.n_users})")
    return users


def build_candidates(
    split: Split,
    protocol: str,
    stage: Stage,
    protocol_seed: int = DEFAULT_PROTOCOL_SEED,
    users: np.ndarray | None = None,
) -> np.ndarray | None:
    """(U, C) int64 candidate ids per user, column 0 = target; None for `full`.

    Rows follow `users` (all users when None); a user's row never depends on which others are asked.
    When a user has fewer never-seen items than needed (tiny catalogues), all of them are used, a warning
    is logged, and the row is right-padded with PAD (0), which evaluation ignores.
    """
    spec = get_protocol(protocol)
    if spec.n_negatives is None:
        return None
    _, targets = _stage_data(split, stage)
    user_idx = _user_indices(split, users)
    need = spec.n_negatives
    out = np.full((len(user_idx), need + 1), PAD, dtype=np.int64)
    seen = np.zeros(split.n_items + 1, dtype=bool)  # reused per user; index = item id
    short = 0
    for row, u in enumerate(user_idx):
        # the whole sequence: the test history holds train + validation items, plus the test item
        sequence = np.append(split.test_history[u], split.test_target[u]).astype(np.int64)
        if split.test_hidden is not None and stage == "test":  # consumed items a cold-start split hid
            sequence = np.append(sequence, split.test_hidden[u]).astype(np.int64)
        seen[sequence] = True
        seen[PAD] = True
        pool = np.flatnonzero(~seen)
        seen[sequence] = False
        rng = np.random.default_rng([protocol_seed, STAGE_CODES[stage], int(u)])
        if len(pool) < need:
            short += 1
            negatives = rng.permutation(pool)
        else:
            negatives = rng.choice(pool, size=need, replace=False)
        out[row, 0] = targets[u]
        out[row, 1 : 1 + len(negatives)] = negatives
    if short:
        logger.warning(
            "%s/%s: %d of %d users have fewer than %d never-seen items; using all they have",
            protocol,
            stage,
            short,
            len(user_idx),
            need,
        )
    return out


def _history_mask(histories: list[np.ndarray], targets: np.ndarray, n_items: int) -> np.ndarray:
    """(B, n_items) bool over item ids 1..n_items: False for history items, True for the target."""
    valid = np.ones((len(histories), n_items), dtype=bool)
    lengths = np.fromiter((len(h) for h in histories), dtype=np.int64, count=len(histories))
    rows = np.repeat(np.arange(len(histories)), lengths)
    items = np.concatenate(histories).astype(np.int64) if len(rows) else np.zeros(0, dtype=np.int64)
    keep = items != PAD
    valid[rows[keep], items[keep] - 1] = False
    valid[np.arange(len(histories)), targets - 1] = True
    return valid


def _score_batch(score_fn: ScoreFn, histories: list[np.ndarray], n_items: int) -> np.ndarray:
    scores = np.asarray(score_fn(histories))
    if scores.shape != (len(histories), n_items + 1):
        raise ValueError(f"score_fn must return ({len(histories)}, {n_items + 1}) scores, got {scores.shape}")
    # a NaN anywhere over real items is a model bug, even where no candidate looks: fail on every protocol
    nan_rows = np.flatnonzero(np.isnan(scores[:, 1:]).any(axis=1))
    if nan_rows.size:
        raise ValueError(f"score_fn returned NaN scores for {nan_rows.size} of {len(histories)} histories")
    return scores


def _batch_ranks(
    spec: ProtocolSpec,
    scores: np.ndarray,
    histories: list[np.ndarray],
    targets: np.ndarray,
    candidates: np.ndarray | None,
    mask_history: bool,
) -> np.ndarray:
    """(B,) ranks of one scored batch; scores (B, n_items + 1), candidates (B, C) or None for full."""
    if spec.n_negatives is None:
        n_items = scores.shape[1] - 1
        valid = _history_mask(histories, targets, n_items) if mask_history else None
        return target_ranks(scores[:, 1:], targets - 1, valid)
    assert candidates is not None
    picked = np.take_along_axis(scores, candidates, axis=1)  # (B, C)
    return target_ranks(picked, np.zeros(len(candidates), dtype=np.int64), candidates != PAD)


def ranks_by_protocol(
    score_fn: ScoreFn,
    split: Split,
    protocols: Sequence[str],
    stage: Stage,
    *,
    batch_size: int = 256,
    protocol_seed: int = DEFAULT_PROTOCOL_SEED,
    users: np.ndarray | None = None,
    mask_history: bool = True,
) -> dict[str, np.ndarray]:
    """{protocol: (U,) pessimistic 0-based target ranks}, scoring each batch once for all protocols.

    Rows follow `users` (all users when None); per-user ranks allow paired significance tests.
    """
    specs = [get_protocol(p) for p in protocols]
    histories, targets = _stage_data(split, stage)
    user_idx = _user_indices(split, users)
    candidates = {s.name: build_candidates(split, s.name, stage, protocol_seed, user_idx) for s in specs}
    ranks = {s.name: np.empty(len(user_idx), dtype=np.int64) for s in specs}
    for start in range(0, len(user_idx), batch_size):
        batch = user_idx[start : start + batch_size]
        rows = slice(start, start + len(batch))
        batch_hist = [histories[u] for u in batch]
        batch_targets = targets[batch].astype(np.int64)
        scores = _score_batch(score_fn, batch_hist, split.n_items)  # (B, n_items + 1)
        masked = batch_hist
        if split.test_hidden is not None and stage == "test":  # consumed items a cold-start split hid
            masked = [np.append(h, split.test_hidden[u]).astype(np.int64) for h, u in zip(batch_hist, batch, strict=True)]
        for spec in specs:
            cand = candidates[spec.name]
            ranks[spec.name][rows] = _batch_ranks(
                spec, scores, masked, batch_targets, None if cand is None else cand[rows], mask_history
            )
    return ranks


def _summarise(ranks: np.ndarray, spec: ProtocolSpec, mask_history: bool) -> dict[str, float]:
    result = compute_metrics(ranks, spec.metrics)
    if spec.n_negatives is None:
        result["mask_history"] = float(mask_history)
    return result


def evaluate(
    score_fn: ScoreFn,
    split: Split,
    protocol: str,
    stage: Stage,
    *,
    batch_size: int = 256,
    protocol_seed: int = DEFAULT_PROTOCOL_SEED,
    users: np.ndarray | None = None,
    mask_history: bool = True,
) -> dict[str, float]:
    """Mean metrics of `score_fn` under one named protocol, e.g. {"HR@10": 0.61, "NDCG@10": 0.35, ...}.

    `score_fn(histories)` returns (B, n_items + 1) scores over all item ids (column 0 ignored). Valid
    ranks valid_target given valid_history, test ranks test_target given test_history. For `full` the
    result also records the history-mask choice as "mask_history" (1.0 or 0.0).
    """
    return evaluate_all(
        score_fn,
        split,
        (protocol,),
        stage,
        batch_size=batch_size,
        protocol_seed=protocol_seed,
        users=users,
        mask_history=mask_history,
    )[protocol]


def evaluate_all(
    score_fn: ScoreFn,
    split: Split,
    protocols: Sequence[str] = ("full", "sampled100", "cand20"),
    stage: Stage = "test",
    *,
    batch_size: int = 256,
    protocol_seed: int = DEFAULT_PROTOCOL_SEED,
    users: np.ndarray | None = None,
    mask_history: bool = True,
) -> dict[str, dict[str, float]]:
    """{protocol: {metric: mean}} for each named protocol; the model scores each batch only once."""
    start = time.perf_counter()
    ranks = ranks_by_protocol(
        score_fn,
        split,
        protocols,
        stage,
        batch_size=batch_size,
        protocol_seed=protocol_seed,
        users=users,
        mask_history=mask_history,
    )
    results = {p: _summarise(r, get_protocol(p), mask_history) for p, r in ranks.items()}
    level = logging.INFO if stage == "test" else logging.DEBUG  # validation runs every epoch
    for p, result in results.items():
        logger.log(
            level,
            "%s/%s (%d users): %s",
            p,
            stage,
            len(ranks[p]),
            ", ".join(f"{k}={v:.4f}" for k, v in result.items()),
        )
    logger.log(level, "evaluated %s on %s in %.2fs", list(protocols), stage, time.perf_counter() - start)
    return results
