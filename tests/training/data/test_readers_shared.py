"""Readers on the real shared files; the expected counts are those verified in each folder's README."""

from __future__ import annotations

from tests.training.data.conftest import shared_folder
from training.data import DATASETS, RawDataset, read_dataset


def _counts(raw: RawDataset) -> tuple[int, int, int]:
    return (
        len(raw.interactions),
        len({x.user for x in raw.interactions}),
        len({x.item for x in raw.interactions}),
    )


def test_ml100k_counts_and_items(ml100k_raw: RawDataset) -> None:
    ml100k = ml100k_raw
    assert _counts(ml100k) == (100_000, 943, 1682)
    assert len(ml100k.items) == 1682
    assert ml100k.issues.total == 0
    toy = ml100k.items["1"]
    assert toy.title == "Toy Story (1995)"
    assert toy.categories == ["Animation", "Children's", "Comedy"]
    assert toy.extra["release_date"] == "01-Jan-1995"
    assert any("Misérables" in m.title for m in ml100k.items.values())  # u.item is latin-1
    first = ml100k.interactions[0]  # file order is kept: u.data line 1 is "196 242 3 881250949"
    assert (first.user, first.item, first.timestamp, first.rating) == ("196", "242", 881250949, 3.0)


def test_amazon_magazine_counts_and_title_fallback() -> None:
    raw = read_dataset("amazon-magazine", shared_folder(DATASETS["amazon-magazine"].folder))
    # README: 2,375 reviews, 64 on 6 items without metadata, then 69 repeated (user, item) pairs.
    assert _counts(raw) == (2242, 348, 151)
    assert raw.issues.counts == {"duplicate_meta": 1065, "missing_meta": 64, "duplicate_event": 69}
    assert len(raw.items) == 2320
    reviewed = [raw.items[i] for i in {x.item for x in raw.interactions}]
    assert sum(m.extra["title_source"] == "title" for m in reviewed) == 3  # README: only 3 real titles
    for meta in reviewed:
        assert meta.title and "<" not in meta.title and "<" not in meta.description
    assert sum(x.review is not None for x in raw.interactions) >= 2240


def test_amazon_giftcards_counts() -> None:
    raw = read_dataset("amazon-giftcards", shared_folder(DATASETS["amazon-giftcards"].folder))
    assert _counts(raw) == (2965, 458, 148)
    assert raw.issues.counts == {"duplicate_event": 7}
    assert len(raw.items) == 1547
    assert all(raw.items[x.item].extra["title_source"] == "title" for x in raw.interactions)
    assert raw.items["B004LLIKVU"].title
