"""The rerank stage with fake backends: prompt and labels, blend and stable order, the tail after the
reranked candidates, fallbacks (timeout, error, unavailable) with their counters, and readiness states."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import pytest

from recbundle.rerank import RerankSpec, rank_prompt
from service.core.rerank import Reranker
from service.index.catalogue import Catalogue
from service.metrics.registry import Metrics


class CharTokenizer:
    """One token per character, no chat template: enough for prompts and one-token labels."""

    chat_template = None

    def __call__(self, text: str, add_special_tokens: bool = False) -> dict[str, list[int]]:
        return {"input_ids": [ord(c) for c in text]}


class FakeScorer:
    name = "fake"
    has_soft_prompt = True
    adapter_names = frozenset({"rerank"})
    tokenizer = CharTokenizer()

    def __init__(self, scores: list[float] | None = None, delay_s: float = 0.0, fail: bool = False) -> None:
        self.scores = scores
        self.delay_s = delay_s
        self.fail = fail
        self.calls: list[dict[str, Any]] = []

    async def score_labels(
        self, prompt: str, label_ids: list[int], deadline: float, *, soft_prompt: bool, adapter: str | None
    ) -> list[float]:
        self.calls.append({"prompt": prompt, "labels": label_ids, "soft": soft_prompt, "adapter": adapter})
        await asyncio.sleep(self.delay_s)  # a stalled engine ignores its deadline
        if self.fail:
            raise RuntimeError("engine died")
        return (self.scores or [0.0] * 26)[: len(label_ids)]


@pytest.fixture(scope="module")
def catalogue(bundle_dir: Path) -> Catalogue:
    return Catalogue.from_jsonl(bundle_dir / "items.jsonl")


def make(catalogue: Catalogue, backend: Any, spec: RerankSpec | None = None, **kw: Any) -> tuple[Reranker, Metrics]:
    metrics = Metrics()
    status = "ok" if backend is not None else kw.pop("llm_status", "unavailable")
    spec = spec if spec is not None else RerankSpec(n_candidates=4, labels=list("ABCD"), blend_lambda=0.5)
    return Reranker(backend, status, spec, catalogue, metrics, deadline_ms=kw.pop("deadline_ms", 1000), **kw), metrics


RETRIEVED = [(11, 3.0), (12, 2.9), (13, 2.5), (14, 2.4), (15, 2.0), (16, 1.0)]


def test_blend_orders_the_head_and_keeps_the_tail(catalogue: Catalogue) -> None:
    # teacher + 0.5 * llm: 11 -> 3.0-1.0=2.0, 12 -> 2.9-0.2=2.7, 13 -> 2.5-0.4=2.1, 14 -> 2.4-0.6=1.8
    backend = FakeScorer([-2.0, -0.4, -0.8, -1.2])
    reranker, _ = make(catalogue, backend)
    out = asyncio.run(reranker.rerank([1, 2, 3], RETRIEVED))
    assert out.status == "ok" and out.ms > 0
    assert [i for i, _ in out.items] == [12, 13, 11, 14, 15, 16]  # 15, 16 follow in retrieval order
    assert out.items[0][1] == pytest.approx(2.7) and out.items[4] == (15, 2.0)
    call = backend.calls[0]
    assert call["labels"] == [ord(c) for c in "ABCD"] and call["soft"] and call["adapter"] == "rerank"
    title = catalogue.title_of
    expected = rank_prompt(
        backend.tokenizer, [(i, title[i]) for i in (1, 2, 3)], [(i, title[i]) for i in (11, 12, 13, 14)], reranker.spec
    )
    assert call["prompt"] == expected and "A. Casablanca (1942)" in expected


def test_ties_keep_the_retrieval_order(catalogue: Catalogue) -> None:
    reranker, _ = make(catalogue, FakeScorer([0.0, 0.0, 0.0, 0.0]))
    tied = [(21, 1.0), (22, 1.0), (23, 1.0), (24, 1.0)]
    assert asyncio.run(reranker.rerank([1], tied)).items == tied


def test_fewer_candidates_than_labels(catalogue: Catalogue) -> None:
    backend = FakeScorer([-3.0, 0.0])
    reranker, _ = make(catalogue, backend)
    out = asyncio.run(reranker.rerank([1], RETRIEVED[:2]))
    assert [i for i, _ in out.items] == [12, 11] and backend.calls[0]["labels"] == [ord("A"), ord("B")]
    assert asyncio.run(reranker.rerank([1], RETRIEVED[:1])).items == RETRIEVED[:1]  # nothing to order


def test_a_stalled_llm_falls_back_within_the_deadline(catalogue: Catalogue) -> None:
    reranker, metrics = make(catalogue, FakeScorer(delay_s=5.0), deadline_ms=200)
    start = time.perf_counter()
    out = asyncio.run(reranker.rerank([1, 2], RETRIEVED))
    assert time.perf_counter() - start < 0.5
    assert out.status == "timeout" and out.items == RETRIEVED
    assert b'seqrec_rerank_fallback_total{reason="timeout"} 1.0' in metrics.exposition()
    assert b'seqrec_stage_duration_seconds_count{stage="rerank"} 1.0' in metrics.exposition()


def test_an_engine_error_falls_back(catalogue: Catalogue) -> None:
    reranker, metrics = make(catalogue, FakeScorer(fail=True))
    out = asyncio.run(reranker.rerank([1], RETRIEVED))
    assert out.status == "error" and out.items == RETRIEVED
    assert b'seqrec_rerank_fallback_total{reason="error"} 1.0' in metrics.exposition()


def test_plan_and_states(catalogue: Catalogue) -> None:
    ok, _ = make(catalogue, FakeScorer())
    assert ok.state == "ok" and ok.plan(None) is None and ok.plan(True) is None and ok.plan(False) == "disabled"
    assert "4 candidates" in ok.detail and "lambda 0.5" in ok.detail
    off_by_default, _ = make(catalogue, FakeScorer(), default=False)
    assert off_by_default.plan(None) == "disabled" and off_by_default.plan(True) is None
    fewer, _ = make(catalogue, FakeScorer(), candidates=3)
    more, _ = make(catalogue, FakeScorer(), candidates=26)
    assert fewer.n == 3 and more.n == 4  # capped at the labels the LLM was tuned on

    failed_llm, metrics = make(catalogue, None, llm_status="unavailable")
    assert failed_llm.state == "failing" and failed_llm.plan(True) == "unavailable"
    assert b'seqrec_rerank_fallback_total{reason="unavailable"} 1.0' in metrics.exposition()
    no_llm, _ = make(catalogue, None, llm_status="disabled")
    assert no_llm.state == "disabled" and no_llm.plan(True) == "disabled"
    no_spec = Reranker(FakeScorer(), "ok", None, catalogue, Metrics(), deadline_ms=100)
    assert no_spec.state == "disabled" and no_spec.plan(None) == "disabled" and no_spec.plan(True) == "disabled"

    missing = make(catalogue, FakeScorer(), RerankSpec(adapter="other"))[0]
    assert missing.state == "failing" and "'other'" in missing.detail and missing.plan(True) == "unavailable"
    multi_token = make(catalogue, FakeScorer(), RerankSpec(n_candidates=2, labels=["A1", "B1"]))[0]
    assert multi_token.state == "failing" and "one token" in multi_token.detail


def test_warm_up_scores_once_and_reports_a_failure(catalogue: Catalogue) -> None:
    backend = FakeScorer()
    reranker, metrics = make(catalogue, backend)
    asyncio.run(reranker.warm_up())
    assert len(backend.calls) == 1 and reranker.state == "ok" and "warm-up" in reranker.detail
    assert b'seqrec_stage_duration_seconds_count{stage="rerank"} 0.0' in metrics.exposition()  # not a request
    broken, _ = make(catalogue, FakeScorer(fail=True))
    asyncio.run(broken.warm_up())
    assert broken.state == "failing" and "engine died" in broken.detail and broken.plan(True) == "unavailable"
