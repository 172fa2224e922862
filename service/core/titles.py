"""Post-check for generated explanations: which catalogue titles does a text name?

An explanation may name the user's history items and the recommended item, nothing else from the catalogue
(an LLM that names other titles is recommending, or hallucinating, items the ranking did not choose).
Titles are matched case-insensitively on word boundaries, with and without a trailing "(year)" and with a
trailing ", The"/", A" article moved to the front (the MovieLens convention, "Usual Suspects, The (1995)").
"""

from __future__ import annotations

import re
from collections import defaultdict

_YEAR = re.compile(r"\s*\(\d{4}\)\s*$")
_ARTICLE = re.compile(r"^(.*),\s*(the|a|an|les|la|le|il|das|der|die|el)$", re.IGNORECASE)
MIN_TITLE_CHARS = 4  # shorter titles ("It", "Up") match ordinary words; they are not checked


def title_variants(title: str) -> set[str]:
    base = _YEAR.sub("", title).strip()
    variants = {title.strip().lower(), base.lower()}
    moved = _ARTICLE.match(base)
    if moved:
        variants.add(f"{moved.group(2)} {moved.group(1)}".lower())
        variants.add(moved.group(1).lower())
    return {v for v in variants if len(v) >= MIN_TITLE_CHARS}


class TitleGuard:
    def __init__(self, titles: list[tuple[int, str]]) -> None:
        owners: dict[str, set[int]] = defaultdict(set)
        for item_id, title in titles:
            for variant in title_variants(title):
                owners[variant].add(item_id)
        self._owners = dict(owners)
        # longest first, so "Toy Story 2" wins over "Toy Story"
        alternation = "|".join(re.escape(v) for v in sorted(owners, key=len, reverse=True))
        self._pattern = re.compile(rf"(?<!\w)(?:{alternation})(?!\w)", re.IGNORECASE) if owners else None

    def spans(self, text: str) -> list[tuple[int, int, set[int]]]:
        """(start, end, item ids carrying that title) of every title named in `text`, in text order."""
        if self._pattern is None:
            return []
        return [(m.start(), m.end(), self._owners[m.group(0).lower()]) for m in self._pattern.finditer(text)]

    def mentions(self, text: str) -> dict[str, set[int]]:
        """Matched title text -> the item ids carrying that title."""
        if self._pattern is None:
            return {}
        found: dict[str, set[int]] = {}
        for m in self._pattern.finditer(text):
            key = m.group(0).lower()
            found[key] = self._owners[key]
        return found

    def foreign_titles(self, text: str, allowed_ids: set[int]) -> list[str]:
        """Titles named in `text` that belong to no allowed item."""
        return sorted(t for t, ids in self.mentions(text).items() if not ids & allowed_ids)
