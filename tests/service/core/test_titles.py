from __future__ import annotations

import pytest

from service.core.titles import TitleGuard, title_variants

GUARD = TitleGuard(
    [
        (1, "Toy Story (1995)"),
        (2, "Toy Story 2 (1999)"),
        (3, "Usual Suspects, The (1995)"),
        (4, "Heat (1995)"),
        (5, "It (1990)"),
        (6, "Alien (1979)"),
    ]
)


def test_variants() -> None:
    assert title_variants("Usual Suspects, The (1995)") == {
        "usual suspects, the (1995)",
        "usual suspects, the",
        "the usual suspects",
        "usual suspects",
    }
    assert title_variants("It (1990)") == {"it (1990)"}  # the bare 2-letter title is not checked


@pytest.mark.parametrize(
    ("text", "allowed", "foreign"),
    [
        ("Because you liked Toy Story, try The Usual Suspects.", {1, 3}, []),
        ("Fans of toy story 2 will enjoy this.", {1}, ["toy story 2"]),  # longest match wins
        ("Like Heat, it is tense.", {6}, ["heat"]),
        ("It is a classic, and it is scary.", set(), []),
        ("Aliens everywhere!", set(), []),  # word boundaries: "Aliens" is not "Alien"
        ("Alien meets Toy Story", {6}, ["toy story"]),
    ],
)
def test_foreign_titles(text: str, allowed: set[int], foreign: list[str]) -> None:
    assert GUARD.foreign_titles(text, allowed) == foreign
