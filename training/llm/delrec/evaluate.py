"""DELRec's evaluation: cand20 metrics from any (N, C) score table, the teacher's scores on the same
candidates, the blend (teacher + lambda * LLM, lambda chosen on validation), the position-bias check, and the
service's setting (rerank the teacher's full-catalogue top-20)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from training.eval.metrics import target_ranks
from training.eval.protocols import compute_metrics
from training.llm.core.ranker import RankItem
from training.models import SequentialRecommender
from training.train.batching import left_pad

CAND_METRICS = ("HR@1", "HR@5", "NDCG@5")
RETRIEVAL_METRICS = ("HR@10", "NDCG@10")


def targets_of(items: Sequence[RankItem]) -> np.ndarray:
    return np.array([it.target for it in items], dtype=np.int64)


def cand_metrics(scores: np.ndarray, items: Sequence[RankItem]) -> dict[str, float]:
    """HR@1, HR@5, NDCG@5 with pessimistic ties (training/eval/metrics.py)."""
    return compute_metrics(target_ranks(scores, targets_of(items)), CAND_METRICS)


@torch.no_grad()
def teacher_scores(model: SequentialRecommender, items: Sequence[RankItem], batch: int = 256) -> np.ndarray:
    """(N, C) the teacher's scores (user vector . item embedding, as the bundle's index computes them) of
    each item's candidates in display order."""
    model.eval()
    out = []
    for start in range(0, len(items), batch):
        chunk = items[start : start + batch]
        hist = [np.asarray(it.history, dtype=np.int64) for it in chunk]
        all_scores = model.score_all(torch.from_numpy(left_pad(hist, model.max_len))).float().numpy()
        out.append(np.stack([all_scores[r, it.candidates] for r, it in enumerate(chunk)]))
    return np.concatenate(out) if out else np.zeros((0, 0), dtype=np.float32)


def choose_lambda(teacher: np.ndarray, llm: np.ndarray, items: Sequence[RankItem], lambdas: Sequence[float],
                  metric: str = "HR@1") -> tuple[float, dict[str, float]]:
    """The lambda with the best validation `metric` (ties: the smaller lambda) and the whole sweep."""
    sweep = {str(lam): cand_metrics(teacher + lam * llm, items)[metric] for lam in lambdas}
    best = max(lambdas, key=lambda lam: (sweep[str(lam)], -lam))
    return float(best), sweep


def position_bias(forward: np.ndarray, reversed_: np.ndarray, items: Sequence[RankItem]) -> dict[str, float]:
    """Same users, candidates shown in reverse order: HR@1 both ways and how often the top item changes."""
    rev_items = [it.reversed() for it in items]
    top_fwd = np.array([it.candidates[i] for it, i in zip(items, forward.argmax(1), strict=True)])
    top_rev = np.array([it.candidates[i] for it, i in zip(rev_items, reversed_.argmax(1), strict=True)])
    return {
        "HR@1": cand_metrics(forward, items)["HR@1"],
        "HR@1_reversed": cand_metrics(reversed_, rev_items)["HR@1"],
        "top1_changed_share": float(np.mean(top_fwd != top_rev)),
    }


def retrieval_items(histories: Sequence[np.ndarray], targets: np.ndarray, topk: np.ndarray, n: int,
                    users: np.ndarray) -> list[RankItem]:
    """The service's question: the teacher's top-n for the history (history masked), in retrieval order;
    target = the position of the true next item there, or -1 when retrieval missed it."""
    out = []
    for u in users:
        cands = [int(i) for i in topk[u, :n]]
        t = int(targets[u])
        out.append(RankItem(histories[u].tolist(), cands, cands.index(t) if t in cands else -1, "retrieval"))
    return out


def retrieval_metrics(order_scores: np.ndarray | None, items: Sequence[RankItem]) -> dict[str, float]:
    """Full-protocol HR@10 / NDCG@10 of the ranking inside the retrieved top-n (a miss stays a miss).
    `order_scores` None = the retrieval order itself."""
    ranks = np.full(len(items), 10**6, dtype=np.int64)  # missed by retrieval: beyond any cut-off
    for r, it in enumerate(items):
        if it.target < 0:
            continue
        if order_scores is None:
            ranks[r] = it.target
        else:
            s = order_scores[r]
            # stable descending order, ties broken by retrieval position, like the service's sort
            order = sorted(range(len(s)), key=lambda i: (-s[i], i))
            ranks[r] = order.index(it.target)
    return compute_metrics(ranks, RETRIEVAL_METRICS)


def mean_std(rows: Sequence[dict[str, float]]) -> dict[str, dict[str, Any]]:
    keys = rows[0].keys() if rows else []
    return {k: {"mean": float(np.mean([r[k] for r in rows])),
                "std": float(np.std([r[k] for r in rows], ddof=1)) if len(rows) > 1 else 0.0,
                "seeds": [float(r[k]) for r in rows]} for k in keys}
