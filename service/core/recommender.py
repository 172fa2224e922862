"""Ranking: history -> encoder -> FAISS top-N -> drop seen -> top-k.

N is asked for in two steps. The exact bound is k * fanout + len(seen) (every seen item might rank above the
k we want), which for a 200-event history made every search fetch ~220 of ML-100K's 1,349 items: 0.58 ms
per batch of 16 against 0.13 ms at 30, and 220-long lists for the event loop to walk. The first search asks
for k * fanout plus at most 2 * k * fanout of the seen items; only when fewer than k unseen items come back
does the request search again with the exact bound (for a flat index the short list is a prefix of the long
one, so the answer is the same). On the ML-100K bodies of the load test (k=10) 4 in 1,000 requests search
twice (docs/service.md, "Two-step retrieval and the GIL"); `seqrec_retrieval_refetch_total` counts them.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from service.core.history import left_pad
from service.core.retrieval import Hits, MicroBatcher, Retriever
from service.index.bundle import Bundle
from service.metrics.registry import Metrics


@dataclass(frozen=True)
class Ranking:
    items: list[tuple[int, float]]  # (item_id, score), best first
    encode_ms: float
    search_ms: float


class Recommender:
    def __init__(
        self,
        bundle: Bundle,
        metrics: Metrics,
        *,
        fanout: int,
        batch_window_ms: float = 0.0,
        batch_max_size: int = 1,
        batch_inflight: int = 2,
        workers: int = 4,
        search_threads: int = 1,
    ) -> None:
        self.bundle = bundle
        self.metrics = metrics
        self.fanout = fanout
        self._encode_hist = metrics.stage.labels("encode")  # resolved once: hot path
        self._search_hist = metrics.stage.labels("search")
        self._refetch = metrics.retrieval_refetch
        self.retriever = Retriever(bundle, metrics, workers, search_threads)
        self.batcher = (
            MicroBatcher(self.retriever, batch_window_ms / 1000, batch_max_size, batch_inflight)
            if batch_max_size > 1
            else None
        )

    async def start(self) -> None:
        if self.batcher is not None:
            self.batcher.start()

    async def close(self) -> None:
        if self.batcher is not None:
            await self.batcher.close()
        self.retriever.close()

    def candidates(self, k: int, n_seen: int) -> int:
        """How many to fetch so that k remain after dropping the seen ones (exact for a flat index)."""
        return min(self.bundle.n_items, k * self.fanout + n_seen)

    def first_fetch(self, k: int, n_seen: int) -> int:
        """The first search's N: room for k * fanout candidates and up to 2 * k * fanout seen items."""
        return min(self.bundle.n_items, k * self.fanout + min(n_seen, 2 * k * self.fanout))

    async def rank(self, history: list[int], k: int, exclude_seen: bool) -> Ranking:
        seen = set(history) if exclude_seen else set()
        seq = left_pad(history, self.bundle.max_len)
        n, exact = self.first_fetch(k, len(seen)), self.candidates(k, len(seen))
        hits = await self._search(seq, n)
        items = self._top_k(hits, seen, k)
        encode_s, search_s = hits.encode_s, hits.search_s
        if len(items) < k and n < exact:  # the first N was mostly seen items: search again, exactly
            self._refetch.inc()
            hits = await self._search(seq, exact)
            items = self._top_k(hits, seen, k)
            encode_s, search_s = encode_s + hits.encode_s, search_s + hits.search_s
        self._encode_hist.observe(encode_s)
        self._search_hist.observe(search_s)
        return Ranking(items, encode_s * 1000, search_s * 1000)

    async def _search(self, seq: np.ndarray, n: int) -> Hits:
        if self.batcher is not None:
            return await self.batcher.submit(seq, n)
        return await self.retriever.run(seq[None, :], n)

    @staticmethod
    def _top_k(hits: Hits, seen: set[int], k: int) -> list[tuple[int, float]]:
        out: list[tuple[int, float]] = []
        for item_id, score in zip(hits.ids[0].tolist(), hits.scores[0].tolist(), strict=True):
            if item_id > 0 and item_id not in seen:
                out.append((item_id, float(score)))
                if len(out) == k:
                    break
        return out
