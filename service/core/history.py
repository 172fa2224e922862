"""History normalisation: the request's events -> a validated list of dense item ids, oldest first."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from service.errors import InvalidHistory, UnknownItems
from service.index.catalogue import Catalogue


@dataclass(frozen=True)
class Event:
    item_id: int
    timestamp: float | None = None


def order_events(events: Sequence[Event]) -> list[int]:
    """Item ids oldest first. With timestamps on every event, a stable sort by time (ties keep request
    order, the tie-break rule ML-100K needs); with none, request order; a mix is refused as ambiguous."""
    stamped = [e.timestamp is not None for e in events]
    if any(stamped) and not all(stamped):
        raise InvalidHistory(
            "give a timestamp on every history event or on none: the order of a mix is ambiguous",
            {"events_with_timestamp": sum(stamped), "events": len(events)},
        )
    if all(stamped) and events:
        return [e.item_id for e in sorted(events, key=lambda e: e.timestamp or 0.0)]
    return [e.item_id for e in events]


def validate_ids(item_ids: Sequence[int], catalogue: Catalogue, max_len: int) -> list[int]:
    if len(item_ids) > max_len:
        raise InvalidHistory(
            f"history has {len(item_ids)} events; at most {max_len} are accepted: send the most recent {max_len}",
            {"events": len(item_ids), "max": max_len},
        )
    unknown = catalogue.unknown(list(item_ids))
    if unknown:
        raise UnknownItems(
            f"unknown item ids {unknown[:10]}: item ids run 1..{len(catalogue)} (see GET /v1/items?q=)",
            {"unknown": unknown[:100], "n_items": len(catalogue)},
        )
    return list(item_ids)


def left_pad(item_ids: Sequence[int], max_len: int) -> np.ndarray:
    """(max_len,) int64, the most recent `max_len` ids right-aligned, 0 = padding (the encoder's layout)."""
    out = np.zeros(max_len, dtype=np.int64)
    tail = list(item_ids)[-max_len:]
    if tail:
        out[max_len - len(tail) :] = tail
    return out


def history_key(item_ids: Sequence[int]) -> str:
    """A short stable digest of a history, for explanation cache keys."""
    return hashlib.blake2b(np.asarray(item_ids, dtype=np.int64).tobytes(), digest_size=10).hexdigest()
