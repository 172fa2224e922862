"""The explanation report's measures, on the test bundle's catalogue (items 1-10 comedies, 31-40 horror)."""

from __future__ import annotations

from pathlib import Path

import pytest

from service.core.explain import Explainer
from service.core.explain_quality import answer_quality, degenerate, summarise
from service.index.catalogue import Catalogue
from service.metrics.registry import Metrics
from service.sessions.memory import InMemoryStore


@pytest.fixture(scope="module")
def explainer(bundle_dir: Path) -> Explainer:
    catalogue = Catalogue.from_jsonl(bundle_dir / "items.jsonl")
    return Explainer(None, "disabled", InMemoryStore(10, 10), catalogue, "b", Metrics(), deadline_ms=1,
                     max_new_tokens=1, history_items=3, cache_ttl_s=1)


def test_measures_of_one_answer(explainer: Explainer) -> None:
    c = explainer.catalogue
    p = 'Because you liked "Annie Hall (1977)",'  # the anchor of history [1, 2] without embeddings: item 2
    texts = {
        3: f"{p} {c[3].title} is another comedy.",  # grounded, true
        4: f"{p} {c[4].title} is a horror film.",  # false claim
        5: f"{p} Casablanca is great.",  # names a title outside history and recommendation
        6: f"{p} {c[6].title} is another comedy.",  # the same text as item 3's once titles are masked
        7: f"{p} great great great great.",  # degenerate
        8: None,  # dropped
    }
    q = answer_quality(explainer, [1, 2], texts)
    assert (q[3].grounded, q[3].attributes_true, q[3].has_claim, q[3].duplicate) == (True, True, True, True)
    assert not q[4].attributes_true and q[4].false_claims == ("Horror->4",)
    assert not q[5].grounded and q[5].attributes_true and not q[5].has_claim
    assert q[6].duplicate and q[7].degenerate and not q[3].degenerate and not q[8].present
    s = summarise(list(q.values()))
    assert s["coverage"] == pytest.approx(5 / 6) and s["grounded"] == pytest.approx(4 / 5)
    assert s["attributes_true"] == pytest.approx(4 / 5) and s["attributes_true_when_claimed"] == pytest.approx(2 / 3)


@pytest.mark.parametrize(("text", "bad"), [("So fine.", True), ("a fun film for the family", False),
                                           ("the film the film the film the film is good", True)])
def test_degenerate(text: str, bad: bool) -> None:
    assert degenerate(text, "") is bad
