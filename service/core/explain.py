"""Explanations for a ranked list: cached per (bundle, LLM, prompt version, history, item), generated in one
batch under a per-request deadline, and post-checked (regenerate once with sampling, else drop): a text must
name no catalogue title outside the user's history and the recommended item (titles.py), and every catalogue
category it claims must be true of the item it is said of (attributes.py). `stream` gives the same texts
piece by piece for the SSE route; its final text is the JSON route's for the same request."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import time
from collections.abc import AsyncGenerator, Callable
from typing import Any, Literal

import numpy as np

from recbundle.rerank import PLACEHOLDER_TITLES
from service.core.attributes import AttributeGuard, title_year
from service.core.history import history_key
from service.core.prompts import PROMPT_VERSION, SYSTEM, answer_prefix, user_prompt
from service.core.titles import TitleGuard
from service.errors import StoreUnavailable
from service.index.catalogue import Catalogue
from service.llm.base import LLMBackend
from service.metrics.registry import Metrics
from service.sessions.base import SessionStore

logger = logging.getLogger(__name__)

# "shed": too many requests were already generating explanations; the ranking is answered without them
ExplanationStatus = Literal["ok", "timeout", "disabled", "unavailable", "shed"]
Explanations = dict[int, str | None]
Refusal = Literal["empty", "foreign_title", "false_attribute"]


class _DeadlineHit(Exception):
    pass


_SENTENCE_END = re.compile(r"[.!?](?=\s|$)")


def lead(body: str) -> str:
    """The model's text as it follows the service's answer prefix, the same on both routes: leading
    whitespace dropped (backends strip their batch answers; a stream starts with the tokenizer's own space),
    then one space unless it starts with punctuation (", which is ..."): '"Jumanji (1995)"as' reads as a typo."""
    body = body.lstrip()
    return body if not body or body[0] in ",.;:!?)" else " " + body


def complete_sentences(text: str, start: int = 0) -> str:
    """Drop a trailing fragment cut off by max_new_tokens: keep the text up to its last sentence end at or
    after `start` (the model's part; the answer prefix's titles hold dots, "Dr. Strangelove"), or the whole
    text if the model's part has none."""
    ends = [m.end() for m in _SENTENCE_END.finditer(text, start)]
    return text[: ends[-1]].strip() if ends else text.strip()


class Explainer:
    def __init__(
        self,
        backend: LLMBackend | None,
        availability: ExplanationStatus,
        store: SessionStore,
        catalogue: Catalogue,
        bundle_id: str,
        metrics: Metrics,
        *,
        deadline_ms: int,
        max_new_tokens: int,
        history_items: int,
        cache_ttl_s: int,
        item_embeddings: np.ndarray | None = None,
        item_labels: dict[int, str] | None = None,
        on_attempt: Callable[[int, list[int], Explanations], None] | None = None,
        llm_id: str = "",
        max_items: int = 10,
        max_pending: int = 8,
    ) -> None:
        """`llm_id`: what writes the texts (recbundle.llm_identity), part of the cache key.
        `max_items`: the first items of a ranking that get explanations (the rest get none); `max_pending`:
        requests generating at once; past it a request is shed (status "shed") instead of queueing, so the
        LLM's work per request and in all is bounded and latency cannot grow without bound.
        `on_attempt(attempt, history, texts)` sees every generation pass before the post-check (attempt 0
        greedy, 1 the sampled retry): the explanation report measures the raw texts through it."""
        self.backend = backend
        self.availability: ExplanationStatus = availability if backend is None else "ok"
        self.store = store
        self.catalogue = catalogue
        self.bundle_id = bundle_id
        self.metrics = metrics
        self.deadline_s = deadline_ms / 1000
        self.max_new_tokens = max_new_tokens
        self.history_items = history_items
        self.cache_ttl_s = cache_ttl_s
        self.guard = TitleGuard(catalogue.titles())
        years = {i: y for i, t in catalogue.titles() if (y := title_year(t)) is not None}
        self.attributes = AttributeGuard(catalogue.categories(), self.guard, years=years)
        self.item_embeddings = item_embeddings
        self.item_labels = item_labels or {}
        self.on_attempt = on_attempt
        self.max_items = max_items
        self.max_pending = max_pending
        self._pending = 0  # requests generating now (one event loop: a plain counter is enough)
        # the cache key names what wrote the text: bundle, its LLM and adapters, backend, prompt version
        self._key_prefix = f"expl:{bundle_id}:{llm_id}:{backend.name if backend else '-'}:p{PROMPT_VERSION}"

    def _key(self, history: list[int], item_id: int) -> str:
        return f"{self._key_prefix}:{history_key(history)}:{item_id}"

    async def explain(
        self, history: list[int], item_ids: list[int]
    ) -> tuple[Explanations, ExplanationStatus]:
        if self.backend is None:
            return {}, self.availability
        deadline = time.monotonic() + self.deadline_s
        item_ids = item_ids[: self.max_items]
        found = await self._cached(history, item_ids)
        missing = [i for i in item_ids if found.get(i) is None]
        if not missing:
            return found, "ok"
        if not self._admit():
            return found, "shed"
        try:  # cancelled at the deadline: the backend stops the generation it started
            texts = await asyncio.wait_for(
                self._generate_checked(history, missing, deadline), max(deadline - time.monotonic(), 0.0)
            )
        except (TimeoutError, _DeadlineHit):
            self.metrics.explain_timeouts.inc()
            return found, "timeout"
        except Exception:
            logger.exception("explanation generation failed")
            return found, "unavailable"
        finally:
            self._pending -= 1
        await self._remember(history, texts)
        return {**found, **texts}, "ok"

    def _admit(self) -> bool:
        """Take a generation slot, or count a shed request when all `max_pending` are taken."""
        if self._pending >= self.max_pending:
            self.metrics.explanations_shed.inc()
            return False
        self._pending += 1
        return True

    async def _cached(self, history: list[int], item_ids: list[int]) -> Explanations:
        try:
            values = await self.store.cache_get([self._key(history, i) for i in item_ids])
        except StoreUnavailable:
            values = [None] * len(item_ids)
        hits = sum(v is not None for v in values)
        self.metrics.cache.labels("hit").inc(hits)
        self.metrics.cache.labels("miss").inc(len(item_ids) - hits)
        return {i: v for i, v in zip(item_ids, values, strict=True) if v is not None}

    async def _remember(self, history: list[int], texts: Explanations) -> None:
        values = {self._key(history, i): t for i, t in texts.items() if t is not None}
        with contextlib.suppress(StoreUnavailable):  # counted by the store; answers do not need the cache
            await self.store.cache_set(values, self.cache_ttl_s)

    async def _generate_checked(
        self, history: list[int], item_ids: list[int], deadline: float
    ) -> Explanations:
        """First pass greedy; items whose text fails the title check get one sampled retry; those failing
        again are dropped (None)."""
        out: Explanations = dict.fromkeys(item_ids)
        pending = item_ids
        for attempt in range(2):
            if time.monotonic() >= deadline:
                raise _DeadlineHit
            texts = await self._generate(history, pending, deadline, sample=attempt > 0)
            if self.on_attempt is not None:
                self.on_attempt(attempt, history, texts)
            pending, refused = [], []
            for item_id, text in texts.items():
                refusal = self.refusal(history, item_id, text)
                if refusal is None:
                    out[item_id] = text
                else:
                    pending.append(item_id)
                    refused.append(refusal)
            if not pending:
                break
        for reason in refused:  # the last attempt's reasons: those are the texts that were dropped
            self.metrics.explain_dropped.labels(reason).inc()
        return out

    def refusal(self, history: list[int], item_id: int, text: str | None) -> Refusal | None:
        """Why the post-check refuses `text` as an explanation of `item_id` for `history`, or None."""
        if not text:
            return "empty"
        allowed = set(history) | {item_id}
        if self.guard.foreign_titles(text, allowed):
            return "foreign_title"
        prefix = self.prefix(history, item_id)
        prefix_end = len(prefix) if text.startswith(prefix) else 0
        if self.attributes.false_claims(text, item_id, allowed, prefix_end):
            return "false_attribute"
        return None

    def prefix(self, history: list[int], item_id: int) -> str:
        """The start of the answer, written for the model (prompts.answer_prefix)."""
        return answer_prefix(self.catalogue[self.anchor(history, item_id)], self.catalogue[item_id])

    def prompt(self, backend: LLMBackend, history: list[int], item_id: int) -> tuple[str, str]:
        """(chat prompt, answer prefix) for one recommended item."""
        recent = [self.catalogue[i] for i in history[-self.history_items :]]
        prefix = self.prefix(history, item_id)
        user = user_prompt(recent, self.catalogue[item_id], self.item_labels)
        return backend.render(SYSTEM, user, prefix), prefix

    async def _generate(
        self, history: list[int], item_ids: list[int], deadline: float, sample: bool
    ) -> Explanations:
        assert self.backend is not None
        prompts, prefixes = zip(*(self.prompt(self.backend, history, i) for i in item_ids), strict=True)
        gen = await self.backend.generate(list(prompts), self.max_new_tokens, deadline, sample=sample)
        self.metrics.llm_tokens.inc(gen.new_tokens)
        if gen.stopped_early:
            raise _DeadlineHit
        return {
            i: complete_sentences(prefix + lead(text).rstrip(), len(prefix)) if text.strip() else None
            for i, prefix, text in zip(item_ids, prefixes, gen.texts, strict=True)
        }

    def anchor(self, history: list[int], item_id: int) -> int:
        """The history item closest to `item_id` by inner product of item embeddings (the most recent one
        when the bundle has no embeddings to compare). Items with a placeholder title (ML-100K's "unknown")
        are never anchors unless the history holds nothing else: "Because you liked "unknown"" helps no one."""
        titled = [i for i in history if self.catalogue.title_of[i].strip().lower() not in PLACEHOLDER_TITLES]
        history = titled or history
        if self.item_embeddings is None:
            return history[-1]
        candidates = list(dict.fromkeys(history))
        scores = self.item_embeddings[candidates] @ self.item_embeddings[item_id]
        return candidates[int(np.argmax(scores))]

    async def stream(self, history: list[int], item_ids: list[int]) -> AsyncGenerator[dict[str, Any], None]:
        """SSE events for the explanations of `item_ids`, as they are generated (all items at once):
        `explanation_delta` {item_id, text} pieces, then one `explanation` {item_id, text} per item with the
        post-checked text (null when it names a title outside the history and the item: clients should
        show the final text), then `explanations_done` {status}. Cached texts come as finals at once."""
        if self.backend is None:
            yield {"event": "explanations_done", "data": {"status": self.availability}}
            return
        backend = self.backend
        deadline = time.monotonic() + self.deadline_s
        item_ids = item_ids[: self.max_items]
        found = await self._cached(history, item_ids)
        for item_id, text in found.items():
            yield {"event": "explanation", "data": {"item_id": item_id, "text": text, "cached": True}}
        if len(found) < len(item_ids) and not self._admit():
            yield {"event": "explanations_done", "data": {"status": "shed"}}
            return
        try:
            missing = [i for i in item_ids if i not in found]
            async with contextlib.aclosing(self._stream_missing(backend, history, missing, deadline)) as events:
                async for event in events:  # closed with this stream: its finally cancels the generation
                    yield event
        finally:
            if len(found) < len(item_ids):
                self._pending -= 1

    async def _stream_missing(
        self, backend: LLMBackend, history: list[int], missing: list[int], deadline: float
    ) -> AsyncGenerator[dict[str, Any], None]:
        events: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue()

        async def one(item_id: int) -> None:
            prompt, prefix = self.prompt(backend, history, item_id)
            parts = [prefix]
            await events.put({"event": "explanation_delta", "data": {"item_id": item_id, "text": prefix}})
            async for piece in backend.stream(prompt, self.max_new_tokens, deadline):
                if len(parts) == 1:  # before the model's first text: as the JSON route joins it (`lead`)
                    if not piece.strip():
                        continue
                    piece = lead(piece)
                parts.append(piece)
                await events.put({"event": "explanation_delta", "data": {"item_id": item_id, "text": piece}})
            self.metrics.llm_tokens.inc(len(parts) - 1)  # pieces, roughly tokens
            # the pieces are the tokenizer's own text, spaces included: join them as they are (a space between
            # pieces split words, "categor ies"), and to the prefix as the JSON route does
            body = "".join(parts[1:])  # its first piece is already `lead`
            text = complete_sentences(prefix + body.rstrip(), len(prefix)) if body.strip() else None
            refusal = self.refusal(history, item_id, text)
            if refusal is not None:
                self.metrics.explain_dropped.labels(refusal).inc()
            final = text if refusal is None and time.monotonic() < deadline else None
            if final is not None:
                await self._remember(history, {item_id: final})
            await events.put({"event": "explanation", "data": {"item_id": item_id, "text": final}})

        tasks = [asyncio.create_task(one(i)) for i in missing]
        waiter = asyncio.create_task(self._after(tasks, events))
        status: ExplanationStatus = "ok"
        try:
            while True:
                try:
                    event = await asyncio.wait_for(events.get(), max(deadline - time.monotonic(), 0.0))
                except TimeoutError:
                    self.metrics.explain_timeouts.inc()
                    status = "timeout"
                    break
                if event is None:
                    break
                yield event
        finally:
            for task in [*tasks, waiter]:
                task.cancel()  # the backends stop generating for cancelled streams
        if status == "ok":
            failed = [t.exception() for t in tasks if not t.cancelled() and t.exception() is not None]
            for error in failed:
                logger.error("streamed explanation failed", exc_info=error)
            if failed or any(t.cancelled() for t in tasks):
                status = "unavailable"
        yield {"event": "explanations_done", "data": {"status": status}}

    @staticmethod
    async def _after(tasks: list[asyncio.Task[None]], events: asyncio.Queue[dict[str, Any] | None]) -> None:
        await asyncio.gather(*tasks, return_exceptions=True)
        await events.put(None)
