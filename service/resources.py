"""Everything the app holds open, built and closed in one place (the lifespan). Each resource is closed in
`finally`, in reverse order, even when a later one fails to open."""

from __future__ import annotations

import asyncio
import functools
import gc
import logging
import sys
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import torch

from service.core.explain import Explainer
from service.core.lifecycle import BundleLifecycle, Generation
from service.core.recommender import Recommender
from service.core.rerank import Reranker
from service.core.serving import RecommendService
from service.errors import NotReady, StoreUnavailable
from service.index.bundle import Bundle, load_bundle
from service.llm.loader import LoadedLLM, resolve_backend
from service.llm.pool import LLMPool, explain_llm_id
from service.metrics.registry import Metrics
from service.sessions.base import SessionStore
from service.sessions.memory import InMemoryStore
from service.sessions.redis_store import RedisStore
from service.settings import Settings

logger = logging.getLogger(__name__)


@dataclass
class Resources:
    """What the app holds open: the settings, the session store (lives as long as the process) and the
    bundle lifecycle, whose current generation holds the bundle, its LLM and the RecommendService.

    `bundle`, `llm` and `serving` read the current generation: fine for a look (readiness), but a request
    that uses them across awaits should hold its generation (`lifecycle.acquire()`), as the routes do."""

    settings: Settings
    store: SessionStore
    lifecycle: BundleLifecycle

    @property
    def generation(self) -> Generation:
        gen = self.lifecycle.current
        if gen is None:
            raise NotReady("the service is starting or stopping: retry shortly")
        return gen

    @property
    def bundle(self) -> Bundle:
        return self.generation.bundle

    @property
    def llm(self) -> LoadedLLM:
        return self.generation.llm

    @property
    def serving(self) -> RecommendService:
        return self.generation.serving


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
    """Its cache keys name the bundle, base model, adapters and soft prompt (by checksum), backend and
    prompt version: a swap to a bundle with other adapters never reads texts the old ones wrote."""
    return Explainer(
        llm.backend, llm.status, store, bundle.catalogue, bundle.bundle_id, metrics,
        deadline_ms=settings.explain_deadline_ms, max_new_tokens=settings.explain_max_new_tokens,
        history_items=settings.explain_history_items, cache_ttl_s=settings.explain_cache_ttl_s,
        item_embeddings=bundle.item_embeddings, item_labels=bundle.item_labels,
        llm_id=explain_llm_id(settings, bundle.manifest),
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


async def open_generation(
    settings: Settings, metrics: Metrics, store: SessionStore, llms: LLMPool, root: Path, number: int
) -> Generation:
    """Load and verify the bundle at `root` (already resolved: every file is read through it, so a link
    repointed meanwhile cannot mix two bundles) and build everything on it. BundleError when the bundle
    does not verify; what was opened is closed again on any failure."""
    stack = AsyncExitStack()
    try:
        bundle = await asyncio.to_thread(load_bundle, root)
        llm, key = await llms.acquire(bundle.manifest, bundle.root)
        stack.push_async_callback(llms.release, key)
        explainer = make_explainer(settings, llm, store, bundle, metrics)
        recommender = make_recommender(settings, bundle, metrics)
        await recommender.start()
        stack.push_async_callback(recommender.close)
        reranker = await make_reranker(settings, llm, bundle, metrics)
        serving = RecommendService(
            recommender, reranker, explainer, store, bundle.catalogue, metrics, max_history=settings.max_history,
            cold_items=bundle.manifest.cold_items,
        )
    except BaseException:
        await stack.aclose()
        raise
    return Generation(number, root, bundle, llm, serving, stack.aclose, load_ms=0.0)


@asynccontextmanager
async def open_resources(settings: Settings, metrics: Metrics) -> AsyncIterator[Resources]:
    stack = AsyncExitStack()
    stack.callback(sys.setswitchinterval, sys.getswitchinterval())  # restored on close
    sys.setswitchinterval(settings.gil_switch_interval_ms / 1000)
    threads = torch_threads(settings)
    if threads is not None:
        stack.callback(torch.set_num_threads, torch.get_num_threads())  # restored on close
        torch.set_num_threads(threads)
    try:
        store = make_store(settings, metrics)
        stack.push_async_callback(store.close)
        try:
            await store.ping()
        except StoreUnavailable as e:
            logger.error("session store unreachable at startup (%s); /readyz reports it", e.message)
        llms = LLMPool(settings, metrics)
        lifecycle = BundleLifecycle(
            settings.bundle_dir,
            functools.partial(open_generation, settings, metrics, store, llms),
            metrics,
            retire_grace_s=settings.bundle_retire_grace_s,
            watch_s=settings.bundle_watch_s,
        )
        stack.push_async_callback(lifecycle.aclose)  # closes every generation, hence their LLM engines
        await lifecycle.start()
        # Everything loaded so far lives for the whole process: keep it out of the cyclic GC's scans,
        # whose full collections otherwise show up as latency spikes under load. (A swapped-in bundle is
        # not frozen: the old one must be collectable.)
        gc.collect()
        gc.freeze()
        yield Resources(settings, store, lifecycle)
    finally:
        await stack.aclose()
