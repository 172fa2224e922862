"""Measures of explanation quality (scripts/explain_report.py), with the service's own post-check parts.

Per text, for one user's answer (history, recommended items):
- grounded: it names at least one history title and no catalogue title outside history and recommendation
  (the served answer prefix names one history item, so the first half holds for every served text; the
  measure still checks it, as a text cut to nothing names none);
- attributes true: every catalogue category it claims is true of the item it is said of (attributes.py);
  a text that claims none passes (`has_claim` tells how many claim something);
- degenerate: fewer than 3 words beyond the answer prefix, or a word 3-gram said 3 times or more, or a word
  repeated 4 times in a row (the loops a small model falls into);
- duplicate: the same text as another item's in the same answer once the titles are masked (a template
  that says nothing about the item).
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import asdict, dataclass

from service.core.explain import Explainer

_WORDS = re.compile(r"[a-z0-9']+")


@dataclass(frozen=True)
class TextQuality:
    present: bool  # a text at all (served texts may be None: dropped by the post-check or past the deadline)
    grounded: bool
    attributes_true: bool
    has_claim: bool
    false_claims: tuple[str, ...]  # "category->item id" for each false claim
    degenerate: bool
    duplicate: bool
    words: int

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


def degenerate(text: str, prefix: str) -> bool:
    body = text[len(prefix):] if text.startswith(prefix) else text
    words = _WORDS.findall(body.lower())
    if len(words) < 3:
        return True
    trigrams = Counter(zip(words, words[1:], words[2:], strict=False))
    if trigrams and max(trigrams.values()) >= 3:
        return True
    return any(words[i] == words[i + 1] == words[i + 2] == words[i + 3] for i in range(len(words) - 3))


def _masked(explainer: Explainer, text: str) -> str:
    """The text with every catalogue title it names replaced by one placeholder."""
    out, last = [], 0
    for start, end, _ in explainer.guard.spans(text):
        out.append(text[last:start] + "<title>")
        last = end
    return ("".join(out) + text[last:]).strip().lower()


def answer_quality(explainer: Explainer, history: list[int], texts: dict[int, str | None]) -> dict[int, TextQuality]:
    """The measures of each recommended item's text in one answer."""
    masked = {i: _masked(explainer, t) for i, t in texts.items() if t}
    counts = Counter(masked.values())
    out = {}
    for item_id, text in texts.items():
        if not text:
            out[item_id] = TextQuality(False, False, False, False, (), False, False, 0)
            continue
        allowed = set(history) | {item_id}
        named = {i for ids in explainer.guard.mentions(text).values() for i in ids}
        prefix = explainer.prefix(history, item_id)
        prefix_end = len(prefix) if text.startswith(prefix) else 0
        claims = explainer.attributes.claims(text, item_id, allowed, prefix_end)
        false = tuple(f"{c.category}->{c.subject}" for c in claims if not c.true)
        out[item_id] = TextQuality(
            present=True,
            grounded=bool(named & set(history)) and not explainer.guard.foreign_titles(text, allowed),
            attributes_true=not false,
            has_claim=bool(claims),
            false_claims=false,
            degenerate=degenerate(text, prefix),
            duplicate=counts[masked[item_id]] > 1,
            words=len(_WORDS.findall(text.lower())),
        )
    return out


def summarise(qualities: list[TextQuality]) -> dict[str, float]:
    """Shares over all texts asked for (`coverage`: share with a text) and over the texts present."""
    present = [q for q in qualities if q.present]
    n, m = max(len(qualities), 1), max(len(present), 1)
    claimed = [q for q in present if q.has_claim]
    return {
        "texts": float(len(qualities)),
        "coverage": len(present) / n,
        "grounded": sum(q.grounded for q in present) / m,
        "attributes_true": sum(q.attributes_true for q in present) / m,
        "attributes_true_when_claimed": sum(q.attributes_true for q in claimed) / max(len(claimed), 1),
        "has_claim": len(claimed) / m,
        "degenerate": sum(q.degenerate for q in present) / m,
        "duplicate": sum(q.duplicate for q in present) / m,
        "mean_words": sum(q.words for q in present) / m,
    }
