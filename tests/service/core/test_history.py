from __future__ import annotations

import numpy as np
import pytest

from service.core.history import Event, check_length, history_key, left_pad, order_events, resolve
from service.errors import InvalidHistory, UnknownItems
from service.index.catalogue import Catalogue, Item

# dense ids 1..5 with catalogue ids "a1".."a5", and one cold-start row "c9" the model does not know
CATALOGUE = Catalogue(
    [Item(item_id=i, raw_id=f"a{i}", title=f"t{i}") for i in range(1, 6)] + [Item(raw_id="c9", title="cold")]
)


@pytest.mark.parametrize(
    ("events", "expected"),
    [
        ([Event("3"), Event("1"), Event("2")], ["3", "1", "2"]),  # no timestamps: request order
        ([Event("3", 30), Event("1", 10), Event("2", 20)], ["1", "2", "3"]),
        ([Event("3", 10), Event("1", 10), Event("2", 5)], ["2", "3", "1"]),  # ties keep request order
        ([], []),
    ],
)
def test_order_events(events: list[Event], expected: list[str]) -> None:
    assert order_events(events) == expected


def test_mixed_timestamps_refused() -> None:
    with pytest.raises(InvalidHistory, match="on every history event or on none"):
        order_events([Event("1", 1.0), Event("2")])


def test_resolve_maps_catalogue_ids_to_dense() -> None:
    got = resolve(["a1", "a5", "a5"], CATALOGUE, "skip")
    assert got.external == ["a1", "a5", "a5"] and got.dense == [1, 5, 5] and got.ignored == []
    with pytest.raises(UnknownItems, match=r"\['0', 'a6'\]"):  # listed once each, in order
        resolve(["0", "a1", "a6", "a6"], CATALOGUE, "skip")
    with pytest.raises(UnknownItems):
        resolve(["1"], CATALOGUE, "skip")  # a dense id is not a catalogue id


def test_cold_rows_follow_the_bundle_policy() -> None:
    got = resolve(["a1", "c9", "a2"], CATALOGUE, "skip")
    assert got.dense == [1, 2] and got.external == ["a1", "a2"] and got.ignored == ["c9"]
    with pytest.raises(UnknownItems, match="cold_items: reject"):
        resolve(["a1", "c9"], CATALOGUE, "reject")


def test_stored_sessions_leave_out_what_the_bundle_does_not_know() -> None:
    got = resolve(["a1", "gone", "a3", "c9"], CATALOGUE, "reject", strict=False)
    assert got.dense == [1, 3] and got.ignored == ["gone", "c9"]


def test_check_length() -> None:
    check_length(2, 2)
    with pytest.raises(InvalidHistory, match="at most 2"):
        check_length(3, 2)


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
