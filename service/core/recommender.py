"""Ranking: history -> encoder -> FAISS top-N -> drop seen -> top-k."""

from __future__ import annotations

from dataclasses import dataclass

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

    async def rank(self, history: list[int], k: int, exclude_seen: bool) -> Ranking:
        seen = set(history) if exclude_seen else set()
        seq = left_pad(history, self.bundle.max_len)
        n = self.candidates(k, len(seen))
        if self.batcher is not None:
            hits = await self.batcher.submit(seq, n)
        else:
            hits = await self.retriever.run(seq[None, :], n)
        self._encode_hist.observe(hits.encode_s)
        self._search_hist.observe(hits.search_s)
        return Ranking(self._top_k(hits, seen, k), hits.encode_s * 1000, hits.search_s * 1000)

    @staticmethod
    def _top_k(hits: Hits, seen: set[int], k: int) -> list[tuple[int, float]]:
        out: list[tuple[int, float]] = []
        for item_id, score in zip(hits.ids[0].tolist(), hits.scores[0].tolist(), strict=True):
            if item_id > 0 and item_id not in seen:
                out.append((item_id, float(score)))
                if len(out) == k:
                    break
        return out
