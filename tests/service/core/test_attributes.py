"""The attribute post-check: which catalogue categories a text claims, of which item, and whether true."""

from __future__ import annotations

import pytest

from service.core.attributes import AttributeGuard, category_forms
from service.core.titles import TitleGuard

ITEMS = {
    1: ("Annie Hall (1977)", ["Comedy", "Romance"]),
    2: ("Young Frankenstein (1974)", ["Comedy"]),
    3: ("Alien (1979)", ["Horror", "Sci-Fi"]),
    4: ("Star Wars (1977)", ["Action", "Sci-Fi", "War"]),
    5: ("Casablanca (1942)", ["Drama", "Romance", "War"]),
    6: ("Fargo (1996)", ["Crime", "Drama", "Thriller"]),
    7: ("Toy Story (1995)", ["Animation", "Children's", "Comedy"]),
    8: ("Lost Title (1990)", ["unknown"]),
}
GUARD = AttributeGuard({i: cats for i, (_, cats) in ITEMS.items()},
                       TitleGuard([(i, t) for i, (t, _) in ITEMS.items()]), max_share=0.5)
PREFIX = 'Because you liked "Annie Hall (1977)",'


def claims(text: str, item: int, allowed: set[int] = frozenset({1}), prefix: bool = True) -> list[tuple[str, int, bool]]:
    end = len(PREFIX) if prefix and text.startswith(PREFIX) else 0
    return [(c.category, c.subject, c.true) for c in GUARD.claims(text, item, allowed, end)]


def test_forms() -> None:
    assert {"comedy", "comedies", "comedic"} <= category_forms("Comedy")
    assert {"sci-fi", "science fiction"} <= category_forms("Sci-Fi")
    assert "children" in category_forms("Children's")


def test_a_false_genre_of_the_recommendation_is_caught() -> None:
    text = f"{PREFIX} you will love Young Frankenstein (1974), a classic horror film."
    assert claims(text, 2) == [("Horror", 2, False)]
    assert [c.category for c in GUARD.false_claims(text, 2, {1}, len(PREFIX))] == ["Horror"]


def test_true_claims_pass_in_their_other_forms() -> None:
    text = f"{PREFIX} Young Frankenstein is another of the great comedies, with comedic timing."
    assert claims(text, 2) == [("Comedy", 2, True), ("Comedy", 2, True)]


def test_the_subject_is_the_item_named_last_and_resets_after_the_prefix() -> None:
    # "romantic" right after the anchor inside the prefix would be said of Annie Hall; after the prefix the
    # main clause is about the recommendation until another title is named
    text = (f"{PREFIX} a science fiction film like Alien (1979) will thrill you. "
            "Annie Hall (1977) is a romantic comedy. It is also a drama.")
    assert claims(text, 3) == [("Sci-Fi", 3, True), ("Romance", 1, True), ("Comedy", 1, True), ("Drama", 1, False)]


def test_words_inside_titles_claim_nothing() -> None:
    # "Star Wars" names the title; its "War" is not a claim about anything
    assert claims("Because you liked Star Wars (1977), try Casablanca (1942).", 5, {4}, prefix=False) == []


def test_a_title_shared_by_several_items_takes_the_allowed_owner() -> None:
    guard = AttributeGuard({1: ["Drama"], 2: ["Horror"]}, TitleGuard([(1, "Heat (1995)"), (2, "Heat (1986)")]))
    [claim] = guard.claims("You liked Heat, a drama.", 9, {1})
    assert claim.subject == 1 and claim.true


def test_uninformative_categories_are_not_claims() -> None:
    # "unknown" is no genre; a category most items hold (Drama here) says nothing either way
    guard = AttributeGuard({1: ["Drama", "unknown"], 2: ["Drama"], 3: ["Drama", "Horror"]}, TitleGuard([]))
    assert guard.vocabulary == ["Horror"]
    assert guard.claims("An unknown drama, not horror.", 1, set()) == [
        guard.claims("horror", 1, set())[0]] and not guard.claims("horror", 1, set())[0].true


@pytest.mark.parametrize("text", ["the warden", "war-torn", "dramatically", "horrible"])
def test_no_claim_inside_longer_words(text: str) -> None:
    assert [c.category for c in GUARD.claims(text, 5, set())] == []


def test_years_and_decades_are_claims_about_the_subject() -> None:
    guard = AttributeGuard({i: cats for i, (_, cats) in ITEMS.items()},
                           TitleGuard([(i, t) for i, (t, _) in ITEMS.items()]), years={1: 1977, 2: 1974})
    text = 'You may enjoy "Young Frankenstein (1974)", a 1970s classic released in 1975, from the \'70s.'
    got = [(c.category, c.subject, c.true) for c in guard.claims(text, 2, {1})]
    assert got == [("1970s", 2, True), ("1975", 2, False), ("'70s", 2, True)]  # the title's (1974) is no claim
    assert not guard.claims("a 1990s hit", 3, set())[0].true  # no known year: nothing supports the claim
