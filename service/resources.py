"""Everything the app holds open, built and closed in one place (the lifespan). Each resource is closed in
`finally`, in reverse order, even when a later one fails to open."""

from __future__ import annotations

import asyncio
import gc
import logging
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass

import torch

from recbundle import llm_identity
from service.core.explain import Explainer
from service.core.recommender import Recommender
from service.core.rerank import Reranker
from service.core.serving import RecommendService
from service.errors import StoreUnavailable
from service.index.bundle import Bundle, load_bundle
from service.llm.loader import LoadedLLM, open_llm, resolve_backend
from service.metrics.registry import Metrics
from service.sessions.base import SessionStore
from service.sessions.memory import InMemoryStore
from service.sessions.redis_store import RedisStore
from service.settings import Settings

logger = logging.getLogger(__name__)


@dataclass
class Resources:
    settings: Settings
    bundle: Bundle
    store: SessionStore
    llm: LoadedLLM
    serving: RecommendService


def make_store(settings: Settings, metrics: Metrics) -> SessionStore:
    if settings.redis_url is None:
        logger.warning("SEQREC_REDIS_URL is unset: sessions live in this process only (not for production)")
        return InMemoryStore(settings.session_max_len, settings.session_ttl_s)
    return RedisStore(
        settings.redis_url,
        settings.session_max_len,
        settings.session_ttl_s,
        prefix=settings.redis_prefix,
        timeout_s=settings.redis_timeout_s,
        on_error=lambda op: metrics.redis_errors.labels(op).inc(),
    )


def make_explainer(
    settings: Settings, llm: LoadedLLM, store: SessionStore, bundle: Bundle, metrics: Metrics
) -> Explainer:
    return Explainer(
        llm.backend, llm.status, store, bundle.catalogue, bundle.bundle_id, metrics,
        deadline_ms=settings.explain_deadline_ms, max_new_tokens=settings.explain_max_new_tokens,
        history_items=settings.explain_history_items, cache_ttl_s=settings.explain_cache_ttl_s,
        item_embeddings=bundle.item_embeddings, item_labels=bundle.item_labels,
        llm_id=f"{llm_identity(bundle.manifest)}-{settings.explain_adapter}",
        max_items=settings.explain_max_items, max_pending=settings.explain_max_pending,
    )  # fmt: skip


async def make_reranker(settings: Settings, llm: LoadedLLM, bundle: Bundle, metrics: Metrics) -> Reranker:
    reranker = Reranker(
        llm.backend, llm.status, bundle.manifest.llm.rerank, bundle.catalogue, metrics,
        deadline_ms=settings.rerank_deadline_ms, candidates=settings.rerank_candidates,
        default=settings.rerank_default,
    )  # fmt: skip
    await reranker.warm_up()  # before traffic: the first request would pay for loading the adapter
    log = logger.error if reranker.state == "failing" else logger.info
    log("rerank stage %s: %s", reranker.state, reranker.detail)
    return reranker


def make_recommender(settings: Settings, bundle: Bundle, metrics: Metrics) -> Recommender:
    return Recommender(
        bundle, metrics, fanout=settings.retrieval_fanout,
        batch_window_ms=settings.batch_window_ms, batch_max_size=settings.batch_max_size,
        batch_inflight=settings.batch_inflight,
        workers=settings.search_workers, search_threads=settings.search_threads,
    )  # fmt: skip


def torch_threads(settings: Settings) -> int | None:
    """The intra-op thread count to set, if any. Unset, the encoder gets one thread unless an in-process
    transformers LLM shares torch: concurrent requests, not intra-op threads, keep the cores busy, and a
    second spinning OpenMP thread took CPU from the event loop (service req/s at 32 concurrent requests
    rose by half; docs/service.md)."""
    if settings.torch_threads is not None:
        return settings.torch_threads
    return None if resolve_backend(settings.llm_backend) == "transformers" else 1


@asynccontextmanager
async def open_resources(settings: Settings, metrics: Metrics) -> AsyncIterator[Resources]:
    stack = AsyncExitStack()
    threads = torch_threads(settings)
    if threads is not None:
        stack.callback(torch.set_num_threads, torch.get_num_threads())  # restored on close
        torch.set_num_threads(threads)
    try:
        bundle = await asyncio.to_thread(load_bundle, settings.bundle_dir)
        m = bundle.manifest
        metrics.set_bundle(m.bundle_id, m.dataset, m.encoder.kind, m.index.type, m.n_items)
        store = make_store(settings, metrics)
        stack.push_async_callback(store.close)
        try:
            await store.ping()
        except StoreUnavailable as e:
            logger.error("session store unreachable at startup (%s); /readyz reports it", e.message)
        llm = await open_llm(settings, m, bundle.root, metrics)
        if llm.backend is not None:
            stack.push_async_callback(llm.backend.aclose)
        explainer = make_explainer(settings, llm, store, bundle, metrics)
        recommender = make_recommender(settings, bundle, metrics)
        await recommender.start()
        stack.push_async_callback(recommender.close)
        reranker = await make_reranker(settings, llm, bundle, metrics)
        serving = RecommendService(
            recommender, reranker, explainer, store, bundle.catalogue, metrics, max_history=settings.max_history,
            cold_items=m.cold_items,
        )
        # Everything loaded so far lives for the whole process: keep it out of the cyclic GC's scans,
        # whose full collections otherwise show up as latency spikes under load.
        gc.collect()
        gc.freeze()
        yield Resources(settings, bundle, store, llm, serving)
    finally:
        await stack.aclose()
