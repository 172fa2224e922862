"""The fixture bundle's catalogue ids: item with dense id i has raw_id str(1000 + i) (bundle_factory.py).
The API speaks catalogue ids; tests reason in dense ids (genre clusters of 10) and translate here, so a mix-up
of the two fails instead of passing by accident."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

OFFSET = 1000


def ext(item_id: int) -> str:
    return str(OFFSET + item_id)


def exts(item_ids: Iterable[int]) -> list[str]:
    return [ext(i) for i in item_ids]


def dense(external_id: str) -> int:
    assert isinstance(external_id, str), external_id
    return int(external_id) - OFFSET


def dense_items(body: dict[str, Any]) -> list[int]:
    """The dense ids of a recommend answer's items, in order."""
    return [dense(it["item_id"]) for it in body["items"]]
