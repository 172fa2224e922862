"""Post-check for the attributes an explanation claims: every catalogue category a text names (a genre such
as "horror", an Amazon category such as "Professional & Educational Journals") must be true of the item it
is said of. A 135M model writes "Titanic ... a classic horror film"; this check refuses that text.

What counts as a claim: a category of the catalogue's own vocabulary (`Item.categories`, every item's), in
the forms a text uses for it ("comedy", "comedies", "comedic"; "sci-fi", "science fiction"), matched
case-insensitively on word boundaries outside the titles the text names (so "Star Wars" claims no "war").
Categories that carry no information are left out: ML-100K's "unknown" genre, and a category held by more
than `max_share` of the catalogue (true of nearly everything, so never a useful claim either way). Words
outside that vocabulary ("classic", "heart-warming") are not checked; the explanation report says so.

Years and decades ("released in 1991", "a 1990s classic", "'90s") are claims too: true when the subject's
year (the "(1995)" of its title, ML-100K's convention) is that year or in that decade; a year claimed of an
item whose year is unknown is false (nothing supports it).

Which item a claim is about (`subject`): the item whose title the text named last before the claim; at the
end of the answer prefix ('Because you liked "X",') the subject becomes the recommended item, since the
main clause that follows is about the recommendation; the subject carries over sentence ends, as a pronoun
("It is a comedy") refers to the last item named. A claim is true when the subject has that category.
Negation ("not a horror film") still counts as a claim: the check is deliberately strict.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass

from service.core.titles import TitleGuard

# Forms beyond the regular plural that texts use for a catalogue category (ML-100K's genres, lowercased).
EXTRA_FORMS: dict[str, tuple[str, ...]] = {
    "sci-fi": ("science fiction", "science-fiction", "scifi", "sci fi"),
    "children's": ("children", "childrens", "kids", "kid's"),
    "film-noir": ("film noir", "noir"),
    "comedy": ("comedic",),
    "drama": ("dramatic",),
    "romance": ("romantic", "romances", "romcom", "rom-com"),
    "animation": ("animated", "cartoon", "cartoons"),
    "documentary": ("documentaries",),
    "mystery": ("mysteries",),
    "musical": ("musicals",),
    "horror": ("horror film", "scary"),
    "thriller": ("thrillers",),
    "western": ("westerns",),
    "war": ("war film", "war movie", "wartime"),
    "fantasy": ("fantasies",),
    "adventure": ("adventures",),
    "crime": ("crimes",),
}
UNINFORMATIVE = frozenset({"unknown", "(no genres listed)", ""})
_TITLE_YEAR = re.compile(r"\((\d{4})\)\s*$")
# 1995, 1990s, '90s, 90s (not inside a longer number or word)
_YEAR_CLAIM = re.compile(r"(?<![\w'-])(?:(1[89]\d\d|20[0-4]\d)(s)?|'?([0-9]0)s)(?![\w-])", re.IGNORECASE)


def title_year(title: str) -> int | None:
    m = _TITLE_YEAR.search(title)
    return int(m.group(1)) if m else None


def category_forms(category: str) -> set[str]:
    """The lowercase strings a text may use to claim `category`."""
    c = category.strip().lower()
    forms = {c, *EXTRA_FORMS.get(c, ())}
    if c.isalpha() and not c.endswith("s"):
        forms.add(c[:-1] + "ies" if c.endswith("y") else c + "s")
    return {f for f in forms if len(f) >= 3}


@dataclass(frozen=True)
class Claim:
    category: str  # the catalogue category, as the catalogue spells it
    said: str  # the words in the text
    subject: int  # the item the claim is about
    true: bool


class AttributeGuard:
    def __init__(self, categories: dict[int, list[str]], titles: TitleGuard, max_share: float = 0.5,
                 years: dict[int, int] | None = None) -> None:
        """`categories`: item id -> its catalogue categories; `years`: item id -> its year, where known."""
        self.titles = titles
        self.years = years or {}
        self._of = {i: {c.strip().lower() for c in cs} for i, cs in categories.items()}
        counts = Counter(c for cs in self._of.values() for c in cs)
        limit = max_share * max(len(categories), 1)
        vocabulary = sorted(c for c, n in counts.items() if c not in UNINFORMATIVE and n <= limit)
        self._form_of: dict[str, str] = {}  # form -> category (lowercase)
        self._spelling: dict[str, str] = {}  # lowercase -> the catalogue's spelling
        for cs in categories.values():
            for c in cs:
                self._spelling.setdefault(c.strip().lower(), c.strip())
        for c in vocabulary:
            for form in category_forms(c):
                self._form_of.setdefault(form, c)
        alternation = "|".join(re.escape(f) for f in sorted(self._form_of, key=len, reverse=True))
        self._pattern = re.compile(rf"(?<![\w-])(?:{alternation})(?![\w-])", re.IGNORECASE) if alternation else None

    @property
    def vocabulary(self) -> list[str]:
        return sorted({self._spelling[c] for c in self._form_of.values()})

    def categories_of(self, item_id: int) -> set[str]:
        return self._of.get(item_id, set())

    def claims(self, text: str, item_id: int, allowed: Iterable[int], prefix_end: int = 0) -> list[Claim]:
        """The category claims of `text`, an explanation of `item_id` whose first `prefix_end` characters
        are the answer prefix. `allowed` (history and recommendation) picks the owner of a title that
        several items share."""
        if self._pattern is None:
            return []
        allowed = set(allowed) | {item_id}
        events: list[tuple[int, int, int | None]] = []  # (start, end, subject item) or a claim (None)
        for start, end, owners in self.titles.spans(text):
            mine = sorted(owners & allowed) or sorted(owners)
            events.append((start, end, mine[0]))
        taken = [(s, e) for s, e, _ in events]
        found = [*self._pattern.finditer(text), *_YEAR_CLAIM.finditer(text)]
        for m in found:
            if not any(s < m.end() and m.start() < e for s, e in taken):  # inside a title: not a claim
                events.append((m.start(), m.end(), None))
        events.sort()
        subject, out, reset_done = item_id, [], prefix_end <= 0
        for start, end, owner in events:
            if not reset_done and start >= prefix_end:
                subject, reset_done = item_id, True
            if owner is not None:
                subject = owner
                continue
            said = text[start:end]
            year = _YEAR_CLAIM.fullmatch(said)
            if year is not None:
                out.append(self._year_claim(year, said, subject))
                continue
            category = self._form_of[said.lower()]
            out.append(Claim(self._spelling[category], said, subject, category in self.categories_of(subject)))
        return out

    def _year_claim(self, m: re.Match[str], said: str, subject: int) -> Claim:
        known = self.years.get(subject)
        if m.group(1):  # 1995 or 1990s
            year = int(m.group(1))
            decade = m.group(2) is not None
            ok = known is not None and (known // 10 == year // 10 if decade else known == year)
            return Claim(f"{year}{'s' if decade else ''}", said, subject, ok)
        two = int(m.group(3))  # '90s: the decade of any century
        return Claim(f"'{two:02d}s", said, subject, known is not None and (known % 100) // 10 == two // 10)

    def false_claims(self, text: str, item_id: int, allowed: Iterable[int], prefix_end: int = 0) -> list[Claim]:
        return [c for c in self.claims(text, item_id, allowed, prefix_end) if not c.true]
