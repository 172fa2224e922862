"""The LLM rerank stage (DELRec, arXiv 2406.11156), between retrieval and explanations.

The bundle's `llm.rerank` spec (recbundle/rerank.py, shared with training's offline ranker) fixes the
rule: the retrieved top-N go into one prompt in retrieval order, candidate i under label i; one forward
pass gives every label's log-probability, normalised over the N labels; final score = teacher inner product
+ lambda * that log-probability, sorted descending (stable on ties). The stage runs under its own deadline;
past it, on an engine error, or without a working LLM the retrieval order is served and `rerank_status`
says why (`seqrec_rerank_fallback_total{reason}` counts it).
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from typing import Literal

from recbundle.rerank import RerankSpec, blend, label_token_ids, rank_prompt
from service.index.catalogue import Catalogue
from service.llm.base import DeadlineExceeded, LLMBackend
from service.metrics.registry import Metrics

logger = logging.getLogger(__name__)

RerankStatus = Literal["ok", "timeout", "error", "unavailable", "disabled"]
StageState = Literal["ok", "failing", "disabled"]
Scored = list[tuple[int, float]]  # (item_id, score), best first


@dataclass(frozen=True)
class Reranked:
    items: Scored  # the reranked candidates, then any retrieved items past them in retrieval order
    status: RerankStatus
    ms: float


class Reranker:
    def __init__(
        self,
        backend: LLMBackend | None,
        llm_status: Literal["ok", "disabled", "unavailable"],
        spec: RerankSpec | None,
        catalogue: Catalogue,
        metrics: Metrics,
        *,
        deadline_ms: int,
        candidates: int | None = None,
        default: bool | None = None,
    ) -> None:
        self.backend = backend
        self.spec = spec
        self.catalogue = catalogue
        self.metrics = metrics
        self.deadline_s = deadline_ms / 1000
        # the LLM was tuned on spec.n_candidates labels: never more; fewer if the operator asks
        self.n = 0 if spec is None else min(candidates or spec.n_candidates, spec.n_candidates)
        self.default = default if default is not None else spec is not None
        self._stage = metrics.stage.labels("rerank")
        self._fallback = {r: metrics.rerank_fallback.labels(r) for r in ("timeout", "error", "unavailable")}
        self.label_ids: list[int] = []
        self.state, self.detail = self._check(llm_status)

    def _check(self, llm_status: str) -> tuple[StageState, str]:
        """Whether the stage can run, and why not (for /readyz); computes the label token ids."""
        spec, backend = self.spec, self.backend
        if spec is None:
            return "disabled", "the bundle has no rerank spec (manifest.llm.rerank)"
        if backend is None:
            return ("disabled", "llm_backend=none") if llm_status == "disabled" else ("failing", "the LLM is unavailable")
        if spec.adapter is not None and spec.adapter not in backend.adapter_names:
            return "failing", f"the rerank spec names adapter {spec.adapter!r}, which the bundle does not hold"
        if spec.soft_prompt and not backend.has_soft_prompt:
            return "failing", "the rerank spec needs a soft prompt and the bundle has none (manifest.llm.soft_prompt)"
        try:
            self.label_ids = label_token_ids(backend.tokenizer, spec.labels[: self.n])
        except ValueError as e:
            return "failing", f"rerank labels do not fit this tokenizer: {e}"
        return "ok", (
            f"{self.n} candidates, adapter {spec.adapter or 'none (base weights)'}, soft prompt "
            f"{'on' if spec.soft_prompt else 'off'}, lambda {spec.blend_lambda:g}, deadline "
            f"{self.deadline_s * 1000:.0f} ms, {'on' if self.default else 'off'} unless a request says"
        )

    async def warm_up(self, timeout_s: float = 300.0) -> None:
        """One scoring call at startup, on catalogue items: the first request would otherwise pay for
        loading the adapter and the first forward pass (on vLLM's CPU engine the first call took 5-6.5 s,
        later ones ~2 s, and the first test request timed out). A failure marks the stage failing."""
        if self.state != "ok":
            return
        ids = list(range(1, min(len(self.catalogue), 2 * self.n) + 1))
        if len(ids) < 4:
            return
        head = [(i, 0.0) for i in ids[len(ids) // 2 :][: self.n]]
        start = time.perf_counter()
        try:
            await asyncio.wait_for(self._score(ids[: len(ids) // 2], head, time.monotonic() + timeout_s), timeout_s)
        except Exception as e:
            self.state, self.detail = "failing", f"warm-up scoring failed: {type(e).__name__}: {e}"
            logger.exception("rerank warm-up failed")
            return
        self.detail += f"; warm-up {1000 * (time.perf_counter() - start):.0f} ms"

    def would_run(self, requested: bool | None) -> bool:
        """Whether `plan` would run the stage (without counting anything)."""
        return bool(self.default if requested is None else requested) and self.state == "ok"

    def plan(self, requested: bool | None) -> RerankStatus | None:
        """None: run the stage for this request; otherwise the status to answer without running it."""
        if not (self.default if requested is None else requested):
            return "disabled"
        if self.state == "ok":
            return None
        if self.state == "disabled":
            return "disabled"
        self._fallback["unavailable"].inc()
        return "unavailable"

    async def rerank(self, history: list[int], retrieved: Scored) -> Reranked:
        """Rerank the first `n` of `retrieved` (retrieval order, best first); the rest follow unchanged."""
        start = time.perf_counter()
        head = retrieved[: self.n]
        status: RerankStatus = "ok"
        items = retrieved
        if len(head) > 1:  # one candidate has a single order
            try:  # wait_for as well: a backend that ignores its deadline must not hold the request
                deadline = time.monotonic() + self.deadline_s
                llm = await asyncio.wait_for(self._score(history, head, deadline), self.deadline_s)
                items = self._blend(head, llm) + retrieved[self.n :]
            except (TimeoutError, DeadlineExceeded):
                status = "timeout"
            except Exception:
                logger.exception("LLM rerank failed; serving the retrieval order")
                status = "error"
            if status != "ok":
                self._fallback[status].inc()
        seconds = time.perf_counter() - start
        self._stage.observe(seconds)
        return Reranked(items, status, seconds * 1000)

    async def _score(self, history: list[int], head: Scored, deadline: float) -> list[float]:
        assert self.backend is not None and self.spec is not None
        title = self.catalogue.title_of
        prompt = rank_prompt(
            self.backend.tokenizer,
            [(i, title[i]) for i in history[-self.spec.history_items :]],
            [(i, title[i]) for i, _ in head],
            self.spec,
        )
        return await self.backend.score_labels(
            prompt, self.label_ids[: len(head)], deadline, soft_prompt=self.spec.soft_prompt, adapter=self.spec.adapter
        )

    def _blend(self, head: Scored, llm: list[float]) -> Scored:
        assert self.spec is not None
        scores = blend([s for _, s in head], llm, self.spec.blend_lambda)
        order = sorted(range(len(head)), key=scores.__getitem__, reverse=True)  # stable: ties keep retrieval order
        return [(head[i][0], scores[i]) for i in order]
