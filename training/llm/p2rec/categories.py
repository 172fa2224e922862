"""Latent categories and per-user preference targets for P2Rec's information reconstruction stage.

TSLRec/P2Rec (arXiv 2406.00333) clusters the item embeddings of a trained SR teacher into K latent
categories and asks the LLM to reconstruct, from a user's history text, the user's distribution over those
categories. The targets offered, as a configured choice:

- "counts": the normalised category counts of the user's whole training sequence (what the user did).
  The prompt shows only the newest titles, so on long histories part of this target is unknowable from
  the input;
- "shown": the counts over exactly the items the prompt shows (fully knowable, but blind to the rest);
- "recency": every training item weighted by 0.5 ** (age / half_life), age 0 = the newest: the whole
  history, with most of the mass on the items the prompt shows (1 - 0.5 ** (M / half_life) of it for M
  shown items);
- "teacher": the teacher's predicted next-item distribution (softmax over all items, with a temperature)
  summed per category (what the SR model believes the user will do next).

The clustering (faiss k-means, optionally spherical) and both targets are ours where the paper text is not
available offline; the choices are config fields.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

log = logging.getLogger(__name__)

ScoreFn = Callable[[list[np.ndarray]], np.ndarray]  # histories -> (B, n_items + 1) scores


@dataclass
class CategoryConfig:
    k: int = 32
    spherical: bool = False  # L2-normalise the embeddings and centroids (cosine k-means)
    niter: int = 50
    nredo: int = 1
    seed: int = 0


@dataclass
class Categories:
    category_of: np.ndarray  # (n_items + 1,) int64; -1 for the padding row 0
    centroids: np.ndarray  # (K, d) float32
    inertia: float  # sum of squared distances to the assigned centroid

    @property
    def k(self) -> int:
        return int(self.centroids.shape[0])


def _prepare(emb: np.ndarray, spherical: bool) -> np.ndarray:
    x = np.ascontiguousarray(emb[1:], dtype=np.float32)  # row 0 is padding
    if spherical:
        x = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
    return x


def fit_categories(item_embeddings: np.ndarray, cfg: CategoryConfig) -> Categories:
    """K-means over rows 1..N of an (n_items + 1, d) teacher item table; every real item gets a category."""
    import faiss

    x = _prepare(item_embeddings, cfg.spherical)
    n, d = x.shape
    if not 1 <= cfg.k <= n:
        raise ValueError(f"k={cfg.k} must be between 1 and the number of items ({n})")
    km = faiss.Kmeans(
        d,
        cfg.k,
        niter=cfg.niter,
        nredo=cfg.nredo,
        seed=cfg.seed,
        spherical=cfg.spherical,
        verbose=False,
        min_points_per_centroid=1,
        max_points_per_centroid=max(256, n),  # no subsampling: deterministic
    )
    km.train(x)
    dist, assign = km.index.search(x, 1)
    category_of = np.full(n + 1, -1, dtype=np.int64)
    category_of[1:] = assign[:, 0]
    inertia = float(dist.sum()) if not cfg.spherical else float(((x - km.centroids[assign[:, 0]]) ** 2).sum())
    return Categories(
        category_of=category_of, centroids=np.asarray(km.centroids, dtype=np.float32), inertia=inertia
    )


def balance(category_of: np.ndarray, k: int) -> dict[str, float]:
    """How evenly items spread over categories: normalised entropy (1 = perfectly even), min/max sizes."""
    sizes = np.bincount(category_of[category_of >= 0], minlength=k).astype(np.float64)
    p = sizes / sizes.sum()
    nz = p[p > 0]
    entropy = float(-(nz * np.log(nz)).sum() / np.log(k)) if k > 1 else 1.0
    return {
        "entropy": entropy,
        "min_size": float(sizes.min()),
        "max_size": float(sizes.max()),
        "empty": float((sizes == 0).sum()),
    }


def sweep_k(
    item_embeddings: np.ndarray, ks: Sequence[int], base: CategoryConfig | None = None
) -> list[dict[str, float]]:
    """One row per K (inertia + balance) for choosing K in a report."""
    base = base or CategoryConfig()
    rows = []
    for k in ks:
        cats = fit_categories(
            item_embeddings, CategoryConfig(k, base.spherical, base.niter, base.nredo, base.seed)
        )
        rows.append({"k": float(k), "inertia": cats.inertia, **balance(cats.category_of, k)})
    return rows


def weighted_targets(
    train: Sequence[np.ndarray], category_of: np.ndarray, k: int, weights: Callable[[int, int], np.ndarray]
) -> np.ndarray:
    """(U, K): each user's category mass with item weights `weights(user, length)` (oldest first),
    normalised; uniform for an empty sequence or all-zero weights."""
    out = np.full((len(train), k), 1.0 / k, dtype=np.float32)
    for u, seq in enumerate(train):
        seq = np.asarray(seq, dtype=np.int64)
        cats = category_of[seq]
        w = np.asarray(weights(u, len(seq)), dtype=np.float64)[cats >= 0]
        if w.sum() > 0:
            mass = np.bincount(cats[cats >= 0], weights=w, minlength=k)
            out[u] = mass / mass.sum()
    return out


def counts_targets(train: Sequence[np.ndarray], category_of: np.ndarray, k: int) -> np.ndarray:
    """(U, K) normalised category counts of each training sequence; uniform for an empty sequence."""
    return weighted_targets(train, category_of, k, lambda u, n: np.ones(n))


def shown_targets(
    train: Sequence[np.ndarray], category_of: np.ndarray, k: int, n_shown: Sequence[int]
) -> np.ndarray:
    """(U, K) category counts of the newest `n_shown[u]` items: exactly what user u's prompt lists."""
    return weighted_targets(train, category_of, k, lambda u, n: (np.arange(n) >= n - n_shown[u]).astype(float))


def recency_targets(train: Sequence[np.ndarray], category_of: np.ndarray, k: int, half_life: float) -> np.ndarray:
    """(U, K) category mass with weight 0.5 ** (age / half_life), age 0 = the newest item."""
    if half_life <= 0:
        raise ValueError(f"recency half-life must be > 0, got {half_life}")
    return weighted_targets(train, category_of, k, lambda u, n: 0.5 ** (np.arange(n)[::-1] / half_life))


def kl_rows(target: np.ndarray, pred: np.ndarray, eps: float = 1e-12) -> np.ndarray:
    """(U,) KL(target_u || pred_u) in nats."""
    t = np.asarray(target, dtype=np.float64)
    q = np.asarray(pred, dtype=np.float64)
    return np.where(t > 0, t * (np.log(t + eps) - np.log(q + eps)), 0.0).sum(axis=1)


def next_nll(pred: np.ndarray, category: np.ndarray) -> float:
    """Mean -log pred[u, category[u]] over users: how well (U, K) distributions predict one category each."""
    p = np.asarray(pred, dtype=np.float64)
    return float(-np.log(p[np.arange(len(category)), category] + 1e-12).mean())


def target_fit(
    target: np.ndarray,
    pred: np.ndarray,
    prior: np.ndarray,
    shown: np.ndarray,
    next_category: np.ndarray,
    shown_for_next: np.ndarray | None = None,
) -> dict[str, float]:
    """How well predictions `pred` (U, K) of held-out users fit their `target` (U, K), next to two
    predictors that need no LLM: the training users' mean target (`prior`, (K,)) and the smoothed histogram
    of the categories the prompt shows (`shown`, (U, K)). `next_category` (U,) is each user's next
    (validation) item's category: its negative log-likelihood is the yardstick common to every target
    variant, since each variant's KL is against a different distribution. `shown_for_next` (default:
    `shown`) is the histogram predictor tuned for that yardstick instead of for the KL."""
    prior_rows = np.broadcast_to(prior, target.shape)
    return {
        "kl": float(kl_rows(target, pred).mean()),
        "kl_prior": float(kl_rows(target, prior_rows).mean()),
        "kl_shown": float(kl_rows(target, shown).mean()),
        "next_nll": next_nll(pred, next_category),
        "next_nll_prior": next_nll(prior_rows, next_category),
        "next_nll_shown": next_nll(shown if shown_for_next is None else shown_for_next, next_category),
        "n_users": float(len(next_category)),
    }


def teacher_targets(
    train: Sequence[np.ndarray],
    category_of: np.ndarray,
    k: int,
    score_fn: ScoreFn,
    temperature: float = 1.0,
    mask_history: bool = True,
    batch_size: int = 256,
) -> np.ndarray:
    """(U, K): softmax(teacher scores / T) over items 1..N, summed per category.

    `mask_history` drops items the user already has (ours: the leave-one-out protocol never asks for a seen
    item again, so their mass would only blur the next-item distribution)."""
    valid = category_of >= 0  # excludes the padding column
    onehot = np.zeros((len(category_of), k), dtype=np.float64)
    onehot[np.flatnonzero(valid), category_of[valid]] = 1.0
    out = np.empty((len(train), k), dtype=np.float32)
    for start in range(0, len(train), batch_size):
        hist = [np.asarray(h, dtype=np.int64) for h in train[start : start + batch_size]]
        scores = np.asarray(score_fn(hist), dtype=np.float64) / temperature  # (B, n_items + 1)
        scores[:, ~valid] = -np.inf
        if mask_history:
            for b, h in enumerate(hist):
                scores[b, h] = -np.inf
        scores -= scores.max(axis=1, keepdims=True)
        p = np.exp(scores)
        p /= p.sum(axis=1, keepdims=True)
        out[start : start + len(hist)] = p @ onehot
    return out


def compare_targets(a: np.ndarray, b: np.ndarray) -> dict[str, float]:
    """Mean Jensen-Shannon divergence (nats) and top-category agreement between two (U, K) target sets."""
    eps = 1e-12
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    m = 0.5 * (a + b)

    def kl(p: np.ndarray, q: np.ndarray) -> np.ndarray:
        return np.where(p > 0, p * (np.log(p + eps) - np.log(q + eps)), 0.0).sum(axis=1)

    js = 0.5 * kl(a, m) + 0.5 * kl(b, m)
    agree = a.argmax(axis=1) == b.argmax(axis=1)
    return {"js_mean": float(js.mean()), "top1_agreement": float(agree.mean())}
