"""Raw events -> chronological implicit-feedback sequences with dense ids (the SASRec protocol).

Rules, in order (each one's dropped events are counted in `stats`):
1. implicit feedback: with `min_rating` set, keep events rated >= min_rating (unrated events go too);
2. one event per (user, item): the first in time (ties: first in file order);
3. `max_users`: keep the first N users by sorted raw id (a tiny preset for tests), before the k-core;
4. iterative k-core (Kang & McAuley 2018 use 5-core): users need max(k_core, 3) events and items k_core,
   repeated until nothing changes; k_core <= 1 only drops users with < 3 events, the minimum that
   leave-one-out needs (one train, one valid and one test item). Folding the 3-event rule into the loop
   keeps the result a true k-core;
5. order: users by raw id (numerically when all ids are integers, else as strings); each user's events
   by timestamp, ties by original file order (the file position is the last sort key). In ML-100K
   50,561 events share their second with the same user's previous event, and Amazon 2018 times are
   whole days, so this rule decides many orderings and is what makes them reproducible;
6. dense item ids 1..N in order of first appearance walking users in that order, each in time order;
   0 stays the padding id.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np

from training.data.errors import DataError
from training.data.types import ItemMeta, RawDataset, SequenceDataset

logger = logging.getLogger(__name__)

MIN_SEQ_LEN = 3


def id_sort_key(ids: Sequence[str]) -> list[tuple[int, str]]:
    """Sort key per raw id: numeric when every id is an integer (so '2' < '10'), else lexicographic."""
    numeric = all(i.lstrip("-").isdigit() for i in ids)
    return [(int(i) if numeric else 0, i) for i in ids]


def _codes(values: Sequence[str]) -> tuple[np.ndarray, list[str]]:
    """Integer code per value (in order of first occurrence) and the value of each code."""
    index: dict[str, int] = {}
    codes = np.fromiter((index.setdefault(v, len(index)) for v in values), dtype=np.int64, count=len(values))
    return codes, list(index)


def filter_k_core(
    users: np.ndarray, items: np.ndarray, k: int, min_user_events: int = MIN_SEQ_LEN
) -> tuple[np.ndarray, int, int]:
    """Iterate until every user has >= max(k, min_user_events) events and every item >= k (k <= 1: no item rule).

    `users`/`items` are the codes (>= 0) of each event. Returns the mask of kept events and the events
    dropped by the user rule and by the item rule (an event failing both counts for the user rule).
    """
    user_min, item_min = max(k, min_user_events), (k if k > 1 else 0)
    n_users = int(users.max()) + 1 if users.size else 0
    n_items = int(items.max()) + 1 if items.size else 0
    keep = np.ones(users.shape, dtype=bool)
    dropped_user = dropped_item = 0
    while True:
        user_counts = np.bincount(users[keep], minlength=n_users)
        item_counts = np.bincount(items[keep], minlength=n_items)
        bad_user = keep & (user_counts[users] < user_min)
        bad_item = keep & ~bad_user & (item_counts[items] < item_min)
        if not (bad_user.any() or bad_item.any()):
            return keep, dropped_user, dropped_item
        dropped_user += int(bad_user.sum())
        dropped_item += int(bad_item.sum())
        keep &= ~(bad_user | bad_item)


def preprocess(
    raw: RawDataset, *, min_rating: float | None = None, k_core: int = 5, max_users: int | None = None
) -> SequenceDataset:
    """Build a `SequenceDataset` from `raw` following the rules in the module docstring."""
    events = raw.interactions
    n = len(events)
    users, user_names = _codes([x.user for x in events])
    items, item_names = _codes([x.item for x in events])
    ts = np.fromiter((x.timestamp for x in events), dtype=np.int64, count=n)
    user_key = id_sort_key(user_names)
    user_rank = np.empty(len(user_names), dtype=np.int64)
    user_rank[sorted(range(len(user_names)), key=user_key.__getitem__)] = np.arange(len(user_names))
    stats: dict[str, float] = {"raw_interactions": n}

    idx = np.arange(n)  # file positions of the events still in play
    if min_rating is not None:
        rating = np.array([np.nan if x.rating is None else x.rating for x in events], dtype=np.float64)
        idx = idx[rating >= min_rating]  # NaN (unrated) compares False
    stats["dropped_min_rating"] = n - len(idx)

    idx = idx[np.lexsort((idx, ts[idx]))]  # time order, ties by file order
    _, first = np.unique(users[idx] * max(len(item_names), 1) + items[idx], return_index=True)
    stats["dropped_duplicate"] = len(idx) - len(first)
    idx = idx[np.sort(first)]  # first-in-time event of each (user, item)

    if max_users is not None:
        n_before = len(idx)
        idx = idx[user_rank[users[idx]] < max_users]
        stats["dropped_max_users"] = n_before - len(idx)

    keep, stats["dropped_kcore_user"], stats["dropped_kcore_item"] = filter_k_core(
        users[idx], items[idx], k_core
    )
    idx = idx[keep]
    if not idx.size:
        raise DataError(f"{raw.name}: no events left after preprocessing; dropped per rule: {stats}")
    idx = idx[np.lexsort((idx, ts[idx], user_rank[users[idx]]))]  # users in id order, each chronological
    return _build(raw, idx, users, items, ts, user_names, item_names, stats)


def _build(
    raw: RawDataset,
    idx: np.ndarray,
    users: np.ndarray,
    items: np.ndarray,
    ts: np.ndarray,
    user_names: list[str],
    item_names: list[str],
    stats: dict[str, float],
) -> SequenceDataset:
    """Cut the ordered events `idx` into per-user sequences, remap item ids densely, fill `stats`."""
    user_of, item_of, time_of = users[idx], items[idx], ts[idx]
    starts = np.flatnonzero(np.r_[True, user_of[1:] != user_of[:-1]]) if idx.size else np.empty(0, np.int64)
    codes, first_pos = np.unique(item_of, return_index=True)
    dense = np.zeros(len(item_names), dtype=np.int64)
    item_order = codes[np.argsort(first_pos)]  # item codes by first appearance
    dense[item_order] = np.arange(1, len(item_order) + 1)
    dense_of = dense[item_of]

    user_ids = [user_names[c] for c in user_of[starts]]
    sequences = [s.copy() for s in np.split(dense_of, starts[1:])] if idx.size else []
    timestamps = [t.copy() for t in np.split(time_of, starts[1:])] if idx.size else []
    user_index = np.cumsum(np.r_[False, user_of[1:] != user_of[:-1]]) if idx.size else idx
    reviews: dict[tuple[int, int], tuple[str, str]] = {}
    for pos, event in enumerate(idx.tolist()):
        x = raw.interactions[event]
        if x.review is not None or x.summary is not None:
            reviews[(int(user_index[pos]), int(dense_of[pos]))] = (x.review or "", x.summary or "")

    catalogue = [item_names[c] for c in item_order]
    items_meta = [raw.items.get(raw_id) or ItemMeta(raw_id=raw_id) for raw_id in catalogue]
    n_users, n_items, n_events = len(user_ids), len(items_meta), len(idx)
    lengths = np.diff(np.r_[starts, n_events])
    same_user = user_of[1:] == user_of[:-1]
    stats.update(
        users=n_users,
        items=n_items,
        interactions=n_events,
        mean_seq_len=float(lengths.mean()) if n_users else 0.0,
        median_seq_len=float(np.median(lengths)) if n_users else 0.0,
        density=n_events / (n_users * n_items) if n_users and n_items else 0.0,
        # events with the same timestamp as the user's previous one: the orderings the tie-break
        # decides (50,561 for raw ML-100K, as in its README)
        timestamp_ties=int((same_user & (time_of[1:] == time_of[:-1])).sum()),
        items_without_meta=sum(raw_id not in raw.items for raw_id in catalogue),
        reviews=len(reviews),
    )
    logger.info("%s: %s", raw.name, {k: round(v, 4) for k, v in stats.items()})
    return SequenceDataset(
        name=raw.name,
        user_ids=user_ids,
        items=items_meta,
        sequences=sequences,
        timestamps=timestamps,
        reviews=reviews,
        stats=stats,
    )
