"""History normalisation: the request's events (catalogue ids) -> the catalogue ids to store, oldest first,
and the dense ids the model ranks from."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from operator import itemgetter
from typing import Any

import numpy as np

from service.errors import InvalidHistory, UnknownItems
from service.index.catalogue import Catalogue


@dataclass(frozen=True)
class Event:
    item_id: str  # the catalogue's id
    timestamp: float | None = None


@dataclass(frozen=True)
class Resolved:
    external: list[str]  # the catalogue ids the model knows, oldest first (what a session stores)
    dense: list[int]  # the same items as the model's row numbers
    ignored: list[str]  # catalogue ids left out: cold-start rows (bundle policy "skip"), or ids a stored
    # session holds that this bundle does not know


def order_events(events: Sequence[Event]) -> list[str]:
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


def check_length(n_events: int, max_len: int) -> None:
    if n_events > max_len:
        raise InvalidHistory(
            f"history has {n_events} events; at most {max_len} are accepted: send the most recent {max_len}",
            {"events": n_events, "max": max_len},
        )


def resolve(external_ids: Sequence[str], catalogue: Catalogue, cold_items: str, *, strict: bool = True) -> Resolved:
    """Map catalogue ids to dense ids. `strict` (ids a client just sent): unknown ids, and cold-start rows
    under the bundle policy "reject", are a 422 listing them. Not strict (a stored session, which may
    predate this bundle): they are left out and listed in `ignored`, never reinterpreted."""
    dense_of = catalogue.dense_of
    try:  # the common case, every id a modelled item: one C-level lookup (a .get per item cost ~4x more)
        found: Any = itemgetter(*external_ids)(dense_of) if external_ids else ()
        dense: list[int] = list(found) if len(external_ids) != 1 else [found]
        return Resolved(list(external_ids), dense, [])
    except KeyError:
        dense = [dense_of.get(e, 0) for e in external_ids]
    missing = list(dict.fromkeys(e for e, d in zip(external_ids, dense, strict=True) if not d))
    cold = [e for e in missing if e in catalogue.cold]
    unknown = [e for e in missing if e not in catalogue.cold]
    if strict and unknown:
        raise UnknownItems(
            f"unknown item ids {unknown[:10]}: send the catalogue's own item ids (see GET /v1/items?q=)",
            {"unknown": unknown[:100], "n_items": len(catalogue)},
        )
    if strict and cold and cold_items == "reject":
        raise UnknownItems(
            f"items {cold[:10]} are in the catalogue but not in this bundle's model, and the bundle refuses "
            "histories holding them (cold_items: reject): leave them out",
            {"cold": cold[:100]},
        )
    kept = [(e, d) for e, d in zip(external_ids, dense, strict=True) if d]
    return Resolved([e for e, _ in kept], [d for _, d in kept], missing)


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
