"""Request-level logic behind the routes: resolve the history (inline and/or session), retrieve, rerank
(LLM), explain."""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Any

from service.api.protocol import (
    HistoryEvent,
    HistoryInput,
    ItemOut,
    RecommendRequest,
    SessionResponse,
)
from service.core.explain import Explainer, Explanations, ExplanationStatus
from service.core.history import Event, Resolved, check_length, order_events, resolve
from service.core.recommender import Recommender
from service.core.rerank import Reranker
from service.errors import InvalidHistory, ItemNotFound, SessionNotFound, StoreUnavailable
from service.index.catalogue import Catalogue, Item
from service.metrics.registry import Metrics
from service.sessions.base import SessionStore

logger = logging.getLogger(__name__)


def _event(e: str | int | HistoryEvent) -> Event:
    if not isinstance(e, HistoryEvent):
        return Event(str(e))  # a JSON integer stands for its digits
    ts = e.timestamp.timestamp() if isinstance(e.timestamp, datetime) else e.timestamp
    return Event(str(e.item_id), ts)


class RecommendService:
    def __init__(
        self,
        recommender: Recommender,
        reranker: Reranker,
        explainer: Explainer,
        store: SessionStore,
        catalogue: Catalogue,
        metrics: Metrics,
        *,
        max_history: int,
        cold_items: str = "skip",
    ) -> None:
        self.recommender = recommender
        self.reranker = reranker
        self.explainer = explainer
        self.store = store
        self.catalogue = catalogue
        self.metrics = metrics
        self.max_history = max_history
        self.cold_items = cold_items  # the bundle's policy for catalogue items its model does not know
        self.bundle_id = recommender.bundle.bundle_id

    def parse_events(self, events: HistoryInput) -> tuple[list[str], Resolved]:
        """The request's catalogue ids in order (what a session stores), and the same resolved for the
        model; unknown ids (and cold-start rows the bundle refuses) are a 422."""
        check_length(len(events), self.max_history)
        if set(map(type, events)) <= {str}:  # the common case: plain ids, already in order
            ids: list[str] = events  # type: ignore[assignment]
        else:
            ids = order_events([_event(e) for e in events])
        return ids, resolve(ids, self.catalogue, self.cold_items)

    async def resolve_history(self, req: RecommendRequest) -> tuple[Resolved, bool]:
        """The history to rank from, and whether it is degraded (store down, inline history used)."""
        sent, inline = self.parse_events(req.history)
        if req.session_id is None:
            if not sent:
                raise InvalidHistory(
                    "history is empty: send at least one item id, or a session_id with events"
                )
            return self._usable(inline), False
        try:
            stored = await (self.store.append(req.session_id, sent) if sent else self.store.get(req.session_id))
        except StoreUnavailable:
            if not sent:
                raise
            self.metrics.degraded.labels("session_store").inc()
            logger.warning("session store down; serving session %s from its inline history", req.session_id)
            return self._usable(inline), True
        if not stored:
            raise SessionNotFound(
                f"session {req.session_id!r} has no events (never created or expired): send a history"
            )
        # a session may hold ids from an earlier bundle: they are left out (and listed), never reinterpreted
        return self._usable(resolve(stored, self.catalogue, self.cold_items, strict=False)), False

    def _usable(self, history: Resolved) -> Resolved:
        if history.ignored:
            self.metrics.history_items_ignored.inc(len(history.ignored))
        if not history.dense:
            raise InvalidHistory(
                "no item of the history is known to this bundle's model: send items it ranks "
                "(GET /v1/items/{item_id} says in_model)",
                {"ignored": history.ignored[:100]},
            )
        return history

    async def recommend(self, req: RecommendRequest) -> dict[str, Any]:
        """The answer as a plain dict shaped like `RecommendResponse` (the documented schema).

        A dict, not the pydantic model: building ~12 models per request cost ~100 us of event-loop time
        (model_construct included), a third of the route's own work; a test checks the shape stays valid.
        """
        start = time.perf_counter()
        answer, history, item_ids = await self._rank(req)
        t_explain = time.perf_counter()
        texts: Explanations = {}
        status: ExplanationStatus = "disabled"
        if req.explain and item_ids:
            texts, status = await self.explainer.explain(history, item_ids)
            self.metrics.stage.labels("explain").observe(time.perf_counter() - t_explain)
            for item, dense in zip(answer["items"], item_ids, strict=True):
                item["explanation"] = texts.get(dense)
        answer["explanation_status"] = status
        answer["timings_ms"]["explain"] = (time.perf_counter() - t_explain) * 1000
        answer["timings_ms"]["total"] = (time.perf_counter() - start) * 1000
        return answer

    async def recommend_stream(self, req: RecommendRequest) -> AsyncIterator[dict[str, Any]]:
        """The ranking first (event `ranking`: the answer without explanations, `explanation_status`
        "pending"), then the explainer's events as each explanation is generated. Errors in the request
        raise before the first event, so they still get their 4xx."""
        start = time.perf_counter()
        answer, history, item_ids = await self._rank(req)
        answer["explanation_status"] = "pending" if item_ids else "disabled"
        answer["timings_ms"]["total"] = (time.perf_counter() - start) * 1000

        external = self.catalogue.external_of

        async def events() -> AsyncIterator[dict[str, Any]]:
            yield {"event": "ranking", "data": answer}
            if item_ids:
                async for event in self.explainer.stream(history, item_ids):
                    data = event["data"]
                    if "item_id" in data:  # the explainer speaks dense ids; clients the catalogue's
                        event = {**event, "data": {**data, "item_id": external[data["item_id"]]}}
                    yield event

        return events()

    async def _rank(self, req: RecommendRequest) -> tuple[dict[str, Any], list[int], list[int]]:
        """(the answer without explanations, the history's dense ids, the answer's dense ids in order)."""
        resolved, degraded = await self.resolve_history(req)
        history = resolved.dense
        status = self.reranker.plan(req.rerank)  # None: rerank
        fetch = req.k if status is not None else max(req.k, self.reranker.n)
        ranking = await self.recommender.rank(history, fetch, req.exclude_seen)
        scored, retrieval_rank, rerank_ms = ranking.items, None, 0.0
        if status is None:
            reranked = await self.reranker.rerank(history, scored)
            retrieval_rank = {i: r for r, (i, _) in enumerate(scored, 1)}
            scored, status, rerank_ms = reranked.items[: req.k], reranked.status, reranked.ms
        titles, external = self.catalogue.title_of, self.catalogue.external_of
        items = [
            {"item_id": external[i], "title": titles[i], "score": s, "rank": r,
             "retrieval_rank": retrieval_rank[i] if retrieval_rank else r, "explanation": None}
            for r, (i, s) in enumerate(scored, 1)
        ]  # fmt: skip
        answer = {
            "items": items,
            "session_id": req.session_id,
            "bundle_id": self.bundle_id,
            "timings_ms": {"encode": ranking.encode_ms, "search": ranking.search_ms, "rerank": rerank_ms,
                           "explain": 0.0, "total": 0.0},
            "explanation_status": "disabled",
            "rerank_status": status,
            "degraded": degraded,
            "ignored_items": resolved.ignored,
        }  # fmt: skip
        return answer, history, [i for i, _ in scored]

    async def add_events(self, session_id: str, events: HistoryInput) -> SessionResponse:
        history = await self.store.append(session_id, self.parse_events(events)[0])
        return SessionResponse(session_id=session_id, history=history, length=len(history))

    async def get_session(self, session_id: str) -> SessionResponse:
        history = await self.store.get(session_id)
        if not history:
            raise SessionNotFound(f"session {session_id!r} not found (never created or expired)")
        return SessionResponse(session_id=session_id, history=history, length=len(history))

    async def delete_session(self, session_id: str) -> None:
        if not await self.store.delete(session_id):
            raise SessionNotFound(f"session {session_id!r} not found (never created or expired)")

    def item(self, item_id: str) -> ItemOut:
        item = self.catalogue.lookup(item_id)
        if item is None:
            raise ItemNotFound(
                f"item {item_id!r} is not in the catalogue: item ids are the catalogue's own "
                "(find them with GET /v1/items?q=)"
            )
        return _item_out(item)

    def search_items(self, query: str, limit: int) -> list[ItemOut]:
        return [_item_out(it) for it in self.catalogue.search(query, limit)]


def _item_out(item: Item) -> ItemOut:
    return ItemOut(
        item_id=item.external_id, in_model=item.item_id is not None, title=item.title,
        description=item.description, categories=item.categories, brand=item.brand,
    )  # fmt: skip
