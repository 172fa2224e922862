from __future__ import annotations

import asyncio
import dataclasses
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from service.core.recommender import Recommender
from service.index.bundle import Bundle, load_bundle
from service.metrics.registry import Metrics


@pytest.fixture(scope="module")
def bundle(bundle_dir: Path) -> Bundle:
    return load_bundle(bundle_dir)


def make(bundle: Bundle, window_ms: float | None = None) -> Recommender:
    size = 1 if window_ms is None else 8  # None: no batcher
    return Recommender(bundle, Metrics(), fanout=2, batch_window_ms=window_ms or 0.0, batch_max_size=size)


def test_candidates_cover_seen_items(bundle: Bundle) -> None:
    rec = make(bundle)
    assert rec.candidates(k=5, n_seen=3) == 13
    assert rec.candidates(k=40, n_seen=30) == 50  # capped at the catalogue
    # the first search: room for at most 2 * k * fanout seen items
    assert rec.first_fetch(k=5, n_seen=3) == 13
    assert rec.first_fetch(k=3, n_seen=25) == 6 + 12
    assert rec.first_fetch(k=40, n_seen=30) == 50


class _RankedIndex:
    """A fake flat index whose ranking is fixed: item 1 first, then 2, 3, ... (so a test knows which
    candidates a search of N returns, and how many of them a history has seen)."""

    def __init__(self, n_items: int) -> None:
        self.ntotal = n_items
        self.searched: list[int] = []

    def search(self, x: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        self.searched.append(k)
        ids = np.tile(np.arange(1, k + 1, dtype=np.int64), (len(x), 1))
        return -ids.astype(np.float32), ids


@pytest.mark.parametrize("batched", [False, True])
def test_a_first_search_full_of_seen_items_is_redone_exactly(bundle: Bundle, batched: bool) -> None:
    fake = _RankedIndex(bundle.n_items)
    rec = Recommender(dataclasses.replace(bundle, index=fake), Metrics(), fanout=2, batch_max_size=4 if batched else 1)

    async def main() -> tuple[list[int], list[int]]:
        await rec.start()
        try:
            short = await rec.rank([2, 1], k=3, exclude_seen=True)  # 8 fetched, 6 unseen: one search
            long = await rec.rank(list(range(1, 26)), k=3, exclude_seen=True)  # 18 fetched, all seen
        finally:
            await rec.close()
        return [i for i, _ in short.items], [i for i, _ in long.items]

    short, long = asyncio.run(main())
    assert short == [3, 4, 5]
    assert long == [26, 27, 28]  # what one search of the exact bound (6 + 25) gives
    assert fake.searched == [8, 18, 31]
    text = rec.metrics.exposition().decode()
    assert float(text.split("\nseqrec_retrieval_refetch_total ")[1].split()[0]) == 1


def test_drop_seen_then_top_k(bundle: Bundle) -> None:
    ranking = asyncio.run(make(bundle).rank([1, 2, 3], k=4, exclude_seen=True))
    ids = [i for i, _ in ranking.items]
    assert len(ids) == 4 and not {1, 2, 3} & set(ids)
    assert ranking.encode_ms > 0 and ranking.search_ms > 0


@pytest.mark.parametrize("window_ms", [0.0, 5.0])
def test_micro_batching_gives_the_same_answers(bundle: Bundle, window_ms: float) -> None:
    histories = [[i, i + 1] for i in range(1, 40, 3)]

    async def run(window_ms: float | None) -> list[list[tuple[int, float]]]:
        rec = make(bundle, window_ms)
        await rec.start()
        try:
            rankings = await asyncio.gather(
                *(rec.rank(h, k=3 + i % 4, exclude_seen=True) for i, h in enumerate(histories))
            )
        finally:
            await rec.close()
        return [r.items for r in rankings]

    plain, batched = asyncio.run(run(None)), asyncio.run(run(window_ms))
    assert [[i for i, _ in r] for r in plain] == [[i for i, _ in r] for r in batched]
    for a, b in zip(plain, batched, strict=True):
        assert [s for _, s in a] == pytest.approx([s for _, s in b], rel=1e-5)


def test_concurrent_requests_share_batches(bundle: Bundle) -> None:
    async def main() -> None:
        rec = make(bundle, 0.0)
        await rec.start()
        try:
            await asyncio.gather(*(rec.rank([i], k=2, exclude_seen=True) for i in range(1, 17)))
        finally:
            await rec.close()
        text = rec.metrics.exposition().decode()
        count = float(text.split("seqrec_encode_batch_size_count ")[1].split()[0])
        assert count < 16  # fewer encoder calls than requests

    asyncio.run(main())


class _OverlapIndex:
    """A fake index that records how many searches run at once (sleeping inside, without the GIL)."""

    def __init__(self, n_items: int) -> None:
        self.ntotal = n_items
        self.running = 0
        self.peak = 0
        self._lock = threading.Lock()

    def search(self, x: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        with self._lock:
            self.running += 1
            self.peak = max(self.peak, self.running)
        time.sleep(0.01)
        with self._lock:
            self.running -= 1
        ids = np.tile(np.arange(1, k + 1, dtype=np.int64), (len(x), 1))
        return np.zeros((len(x), k), dtype=np.float32), ids


@pytest.mark.parametrize(("on_gpu", "batched"), [(True, False), (True, True), (False, False)])
def test_searches_on_a_gpu_index_never_overlap(bundle: Bundle, on_gpu: bool, batched: bool) -> None:
    fake = _OverlapIndex(bundle.n_items)
    gpu_bundle = dataclasses.replace(bundle, index=fake, on_gpu=on_gpu)

    async def main() -> None:
        rec = Recommender(gpu_bundle, Metrics(), fanout=2, batch_max_size=4 if batched else 1,
                          batch_inflight=4, workers=4)
        await rec.start()
        try:
            await asyncio.gather(*(rec.rank([1 + i % 50], k=3, exclude_seen=False) for i in range(32)))
        finally:
            await rec.close()

    asyncio.run(main())
    # a GPU index sees one search at a time; on the CPU the 4 workers do overlap (the test can see it)
    assert fake.peak == 1 if on_gpu else fake.peak > 1
