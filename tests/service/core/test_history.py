from __future__ import annotations

import numpy as np
import pytest

from service.core.history import Event, history_key, left_pad, order_events, validate_ids
from service.errors import InvalidHistory, UnknownItems
from service.index.catalogue import Catalogue, Item

CATALOGUE = Catalogue([Item(item_id=i, title=f"t{i}") for i in range(1, 6)])


@pytest.mark.parametrize(
    ("events", "expected"),
    [
        ([Event(3), Event(1), Event(2)], [3, 1, 2]),  # no timestamps: request order
        ([Event(3, 30), Event(1, 10), Event(2, 20)], [1, 2, 3]),
        ([Event(3, 10), Event(1, 10), Event(2, 5)], [2, 3, 1]),  # ties keep request order
        ([], []),
    ],
)
def test_order_events(events: list[Event], expected: list[int]) -> None:
    assert order_events(events) == expected


def test_mixed_timestamps_refused() -> None:
    with pytest.raises(InvalidHistory, match="on every history event or on none"):
        order_events([Event(1, 1.0), Event(2)])


def test_validate_ids() -> None:
    assert validate_ids([1, 5, 5], CATALOGUE, 10) == [1, 5, 5]
    with pytest.raises(UnknownItems, match=r"\[0, 6\]"):
        validate_ids([0, 1, 6, 6], CATALOGUE, 10)
    with pytest.raises(InvalidHistory, match="at most 2"):
        validate_ids([1, 2, 3], CATALOGUE, 2)


@pytest.mark.parametrize(
    ("ids", "expected"),
    [
        ([], [0, 0, 0, 0]),
        ([7], [0, 0, 0, 7]),
        ([1, 2, 3, 4], [1, 2, 3, 4]),
        ([1, 2, 3, 4, 5, 6], [3, 4, 5, 6]),
    ],
)
def test_left_pad(ids: list[int], expected: list[int]) -> None:
    out = left_pad(ids, 4)
    assert out.dtype == np.int64 and out.tolist() == expected


def test_history_key_is_order_sensitive() -> None:
    assert history_key([1, 2]) == history_key([1, 2]) != history_key([2, 1])
