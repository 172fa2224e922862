"""The explainer with fake backends: post-check, one retry, drop, deadline, cache, failure."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import numpy as np
import pytest

from service.core.explain import Explainer, complete_sentences
from service.index.catalogue import Catalogue
from service.llm.base import Generation
from service.metrics.registry import Metrics
from service.sessions.memory import InMemoryStore


def decoded(reply: str) -> str:
    """A reply as a tokenizer decodes it after the answer prefix: a word carries its leading space, a comma
    not; a reply starting with "~" stands for a model that starts with a word without its space."""
    if reply.startswith("~"):
        return reply[1:]
    return " " + reply if reply[:1].isalnum() else reply


class FakeBackend:
    name = "fake"
    has_soft_prompt = False

    def __init__(self, reply: Callable[[str, bool], str], delay_s: float = 0.0) -> None:
        self.reply = reply
        self.delay_s = delay_s
        self.calls: list[tuple[int, bool]] = []

    def render(self, system: str, user: str, prefix: str = "") -> str:
        return user + "\n" + prefix

    async def generate(
        self, prompts: list[str], max_new_tokens: int, deadline: float, sample: bool = False
    ) -> Generation:
        self.calls.append((len(prompts), sample))
        await asyncio.sleep(self.delay_s)
        # new text as a tokenizer decodes it after the prefix: its leading space included
        return Generation(
            [decoded(self.reply(p, sample)) for p in prompts], 7 * len(prompts), time.monotonic() > deadline
        )

    async def stream(self, prompt: str, max_new_tokens: int, deadline: float) -> AsyncIterator[str]:
        # pieces as a tokenizer cuts them: leading spaces kept, words split ("Frank" + "enstein")
        text = decoded(self.reply(prompt, False))
        for start in range(0, len(text), 4):
            await asyncio.sleep(self.delay_s)
            yield text[start : start + 4]

    async def choose(self, prompt: str, choices: list[str], deadline: float, soft_prompt: bool = False) -> str:
        return choices[-1]

    async def aclose(self) -> None:
        pass


@pytest.fixture(scope="module")
def catalogue(bundle_dir: Path) -> Catalogue:
    return Catalogue.from_jsonl(bundle_dir / "items.jsonl")


def make(
    catalogue: Catalogue,
    backend: FakeBackend | None,
    deadline_ms: int = 2000,
    embeddings: np.ndarray | None = None,
    **limits: int,
) -> tuple[Explainer, Metrics]:
    metrics = Metrics()
    store = InMemoryStore(max_len=50, ttl_s=60)
    explainer = Explainer(
        backend,
        "disabled",
        store,
        catalogue,
        "b1",
        metrics,
        deadline_ms=deadline_ms,
        max_new_tokens=16,
        history_items=3,
        cache_ttl_s=60,
        item_embeddings=embeddings,
        **limits,
    )
    return explainer, metrics


def recommended_title(prompt: str) -> str:
    return prompt.split('Explain why the user may like "')[1].split('"')[0]


def test_ok_and_cached(catalogue: Catalogue) -> None:
    backend = FakeBackend(lambda p, s: "for its wit. And then")
    explainer, metrics = make(catalogue, backend)
    texts, status = asyncio.run(explainer.explain([1, 2], [3, 4]))
    assert (
        status == "ok"
        and texts[3] == 'Because you liked "Annie Hall (1977)", you may enjoy "Young Frankenstein (1974)" for its wit.'
    )
    assert backend.calls == [(2, False)]  # one batch for all items
    texts2, _ = asyncio.run(explainer.explain([1, 2], [3, 4]))
    assert texts2 == texts and backend.calls == [(2, False)]  # served from the cache
    assert b'seqrec_explanation_cache_total{result="hit"} 2.0' in metrics.exposition()
    assert b"seqrec_llm_generated_tokens_total 14.0" in metrics.exposition()


def test_foreign_title_regenerates_once_then_drops(catalogue: Catalogue) -> None:
    # first pass names Casablanca (not in history, not recommended); the sampled retry fixes item 3 only
    def reply(prompt: str, sample: bool) -> str:
        title = recommended_title(prompt)
        if sample and title.startswith("Young"):
            return "as it is just as witty."
        return "as it is like Casablanca."

    backend = FakeBackend(reply)
    explainer, metrics = make(catalogue, backend)
    texts, status = asyncio.run(explainer.explain([1, 2], [3, 4]))
    assert status == "ok"
    assert texts == {
        3: 'Because you liked "Annie Hall (1977)", you may enjoy "Young Frankenstein (1974)" as it is just as witty.',
        4: None,
    }
    assert backend.calls == [(2, False), (2, True)]
    assert b'seqrec_explanations_dropped_total{reason="foreign_title"} 1.0' in metrics.exposition()


def test_a_false_genre_regenerates_once_then_drops(catalogue: Catalogue) -> None:
    # items 1-10 are comedies and 31-40 horror (bundle_factory): "horror" said of a comedy is refused
    def reply(prompt: str, sample: bool) -> str:
        title = recommended_title(prompt)
        if sample and title.startswith("Young"):
            return ", another comedy."
        return ", a classic horror film."

    backend = FakeBackend(reply)
    explainer, metrics = make(catalogue, backend)
    texts, _ = asyncio.run(explainer.explain([1, 2], [3, 4]))
    assert texts == {3: 'Because you liked "Annie Hall (1977)", you may enjoy "Young Frankenstein (1974)", another comedy.', 4: None}
    assert b'seqrec_explanations_dropped_total{reason="false_attribute"} 1.0' in metrics.exposition()
    horror = explainer.prefix([1, 2], 31) + ", a horror film."
    assert explainer.refusal([1, 2], 31, horror) is None and explainer.refusal([1, 2], 3, explainer.prefix([1, 2], 3) + ", a horror film.") == "false_attribute"


def test_prompt_carries_the_item_labels(catalogue: Catalogue) -> None:
    explainer, _ = make(catalogue, FakeBackend(lambda p, s: "fine."))
    explainer.item_labels = {3: "mel brooks; monster parody", 1: "new york; neurotic romance"}
    prompt, prefix = explainer.prompt(explainer.backend, [1, 2], 3)  # type: ignore[arg-type]
    assert "(known for: mel brooks; monster parody)" in prompt and "(known for: new york; neurotic romance)" in prompt
    assert prefix == 'Because you liked "Annie Hall (1977)", you may enjoy "Young Frankenstein (1974)"'


def test_deadline_returns_timeout(catalogue: Catalogue) -> None:
    explainer, metrics = make(catalogue, FakeBackend(lambda p, s: "slow", delay_s=0.5), deadline_ms=100)
    start = time.perf_counter()
    texts, status = asyncio.run(explainer.explain([1], [2, 3]))
    assert status == "timeout" and texts == {}
    assert time.perf_counter() - start < 0.4
    assert b"seqrec_explanation_timeouts_total 1.0" in metrics.exposition()


def test_backend_error_is_unavailable(catalogue: Catalogue) -> None:
    def boom(prompt: str, sample: bool) -> str:
        raise RuntimeError("CUDA out of memory")

    explainer, _ = make(catalogue, FakeBackend(boom))
    assert asyncio.run(explainer.explain([1], [2])) == ({}, "unavailable")


def test_no_backend_reports_its_availability(catalogue: Catalogue) -> None:
    explainer, _ = make(catalogue, None)
    assert asyncio.run(explainer.explain([1], [2])) == ({}, "disabled")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("You liked Alien. Try Brazil, it is", "You liked Alien."),
        ("Great pick! Because", "Great pick!"),
        ("no sentence end here", "no sentence end here"),
        ("Dr. Strangelove fans will like it.", "Dr. Strangelove fans will like it."),
    ],
)
def test_complete_sentences(text: str, expected: str) -> None:
    assert complete_sentences(text) == expected


def test_anchor_is_the_closest_history_item(catalogue: Catalogue, bundle_dir: Path) -> None:
    embeddings = np.load(bundle_dir / "item_embeddings.npy")
    explainer, _ = make(catalogue, None, embeddings=embeddings)
    assert explainer.anchor([1, 21, 41], 25) == 21  # the drama, for a drama
    assert explainer.anchor([1, 21, 41], 45) == 41
    no_embeddings, _ = make(catalogue, None)
    assert no_embeddings.anchor([1, 21, 41], 25) == 41  # the most recent


async def _events(explainer: Explainer, history: list[int], items: list[int]) -> list[dict[str, object]]:
    return [e async for e in explainer.stream(history, items)]


def test_stream_gives_pieces_then_checked_finals_then_done(catalogue: Catalogue) -> None:
    explainer, _ = make(catalogue, FakeBackend(lambda p, s: "it is a great pick."))
    events = asyncio.run(_events(explainer, [1], [2, 3]))
    kinds = [e["event"] for e in events]
    assert kinds[-1] == "explanations_done" and events[-1]["data"] == {"status": "ok"}
    finals = {e["data"]["item_id"]: e["data"]["text"] for e in events if e["event"] == "explanation"}  # type: ignore[index]
    assert set(finals) == {2, 3} and all(t and t.endswith("great pick.") for t in finals.values())
    for item in (2, 3):  # every piece precedes its item's final
        last_piece = max(i for i, e in enumerate(events) if e["event"] == "explanation_delta" and e["data"]["item_id"] == item)  # type: ignore[index]
        final = next(i for i, e in enumerate(events) if e["event"] == "explanation" and e["data"]["item_id"] == item)  # type: ignore[index]
        assert last_piece < final
    # finals were cached: the same request streams them at once, marked cached
    again = asyncio.run(_events(explainer, [1], [2, 3]))
    assert all(e["data"].get("cached") for e in again if e["event"] == "explanation")  # type: ignore[union-attr]


@pytest.mark.parametrize("reply", ["~as a comedy.", ", a comedy.", "for its wit.", "~  \nfor its wit."])
def test_the_prefix_and_the_model_text_meet_with_one_space_or_none(catalogue: Catalogue, reply: str) -> None:
    backend = FakeBackend(lambda p, s: reply)
    json_route, _ = make(catalogue, backend)
    texts, _ = asyncio.run(json_route.explain([1, 2], [3]))
    body = reply.removeprefix("~").lstrip()
    assert texts[3] == json_route.prefix([1, 2], 3) + ("" if body.startswith(",") else " ") + body
    streamed, _ = make(catalogue, backend)
    events = asyncio.run(_events(streamed, [1, 2], [3]))
    final = next(e["data"]["text"] for e in events if e["event"] == "explanation")  # type: ignore[index]
    deltas = "".join(e["data"]["text"] for e in events if e["event"] == "explanation_delta")  # type: ignore[index]
    assert final == deltas == texts[3]


def test_a_dot_in_the_anchors_title_is_no_sentence_end(catalogue: Catalogue) -> None:
    # item 9 is "Dr. Strangelove (1964)": a model text without a sentence end is kept whole, never cut at "Dr."
    backend = FakeBackend(lambda p, s: "for its dark wit and")
    explainer, _ = make(catalogue, backend)
    texts, _ = asyncio.run(explainer.explain([9], [3]))
    assert texts[3] == explainer.prefix([9], 3) + " for its dark wit and"
    assert texts[3].startswith('Because you liked "Dr. Strangelove (1964)"')


def test_streamed_final_text_equals_the_json_routes_text(catalogue: Catalogue) -> None:
    """Pieces are joined exactly as produced (no space inside a word), the same way as the JSON route."""
    backend = FakeBackend(lambda p, s: "for its wit, with its categories.")
    streamed, _ = make(catalogue, backend)
    events = asyncio.run(_events(streamed, [1, 2], [3]))
    final = next(e["data"]["text"] for e in events if e["event"] == "explanation")  # type: ignore[index]
    json_route, _ = make(catalogue, backend)
    texts, _ = asyncio.run(json_route.explain([1, 2], [3]))
    assert final == texts[3] == (
        'Because you liked "Annie Hall (1977)", you may enjoy "Young Frankenstein (1974)" for its wit, with its categories.'
    )


def test_placeholder_titles_are_never_anchors() -> None:
    from service.index.catalogue import Item

    items = [Item(item_id=1, title="Heat (1995)"), Item(item_id=2, title="unknown"), Item(item_id=3, title="Fargo (1996)")]
    explainer, _ = make(Catalogue(items), None, embeddings=np.array([[0, 0], [1, 0], [0, 5], [0, 1]], dtype=np.float32))
    assert explainer.anchor([1, 2], 3) == 1  # "unknown" is closer, but not a title to cite
    assert explainer.anchor([2], 3) == 2  # nothing else to cite: the placeholder is kept


def test_stream_drops_a_text_naming_a_foreign_title(catalogue: Catalogue) -> None:
    foreign = catalogue[40].title
    explainer, _ = make(catalogue, FakeBackend(lambda p, s: f"like {foreign}."))
    events = asyncio.run(_events(explainer, [1], [2]))
    assert [e["data"]["text"] for e in events if e["event"] == "explanation"] == [None]  # type: ignore[index]


def test_stream_times_out(catalogue: Catalogue) -> None:
    explainer, _ = make(catalogue, FakeBackend(lambda p, s: "one two three four", delay_s=0.2), deadline_ms=300)
    events = asyncio.run(_events(explainer, [1], [2]))
    assert events[-1] == {"event": "explanations_done", "data": {"status": "timeout"}}
    assert not [e for e in events if e["event"] == "explanation"]


def test_only_the_first_max_items_are_explained(catalogue: Catalogue) -> None:
    backend = FakeBackend(lambda p, s: "for its wit.")
    explainer, _ = make(catalogue, backend, max_items=2)
    texts, status = asyncio.run(explainer.explain([1, 2], [3, 4, 5, 6]))
    assert status == "ok" and set(texts) == {3, 4} and backend.calls == [(2, False)]
    events = asyncio.run(_events(explainer, [1], [5, 6, 7, 8]))
    finals = {e["data"]["item_id"] for e in events if e["event"] == "explanation"}  # type: ignore[index]
    assert finals == {5, 6}


def test_past_max_pending_requests_are_shed_not_queued(catalogue: Catalogue) -> None:
    backend = FakeBackend(lambda p, s: "for its wit.", delay_s=0.2)
    explainer, metrics = make(catalogue, backend, max_pending=2)

    async def burst() -> list[str]:
        answers = await asyncio.gather(*(explainer.explain([1, u], [3]) for u in (2, 4, 5)))
        streamed = await _events(explainer, [1, 6], [3])  # a free slot again: generated
        return [status for _, status in answers] + [streamed[-1]["data"]["status"]]  # type: ignore[index]

    start = time.perf_counter()
    statuses = asyncio.run(burst())
    assert sorted(statuses[:3]) == ["ok", "ok", "shed"] and statuses[3] == "ok"
    assert explainer._pending == 0  # every slot given back
    assert b"seqrec_explanations_shed_total 1.0" in metrics.exposition()
    assert time.perf_counter() - start < 2.0


def test_a_shed_stream_says_so(catalogue: Catalogue) -> None:
    explainer, _ = make(catalogue, FakeBackend(lambda p, s: "for its wit.", delay_s=0.2), max_pending=1)

    async def both() -> tuple[str, list[dict[str, object]]]:
        first = asyncio.create_task(explainer.explain([1, 2], [3]))
        await asyncio.sleep(0.05)  # the first request holds the only slot
        events = await _events(explainer, [1, 4], [5])
        return (await first)[1], events

    status, events = asyncio.run(both())
    assert status == "ok" and events[-1] == {"event": "explanations_done", "data": {"status": "shed"}}
