"""A tiny review dataset for the ReLRec label tests: 6 users x 4 events over 4 magazines, each review naming
its magazine's aspects, and two planted words that occur only in held-out reviews, each in one review only
(a word in every document would be dropped as generic and prove nothing):

* "zyzzyva" in user 0's test-period review (the last event),
* "quokka" in user 1's validation-period review (second-to-last).
"""

from __future__ import annotations

import numpy as np
import pytest

from training.data.split import leave_one_out
from training.data.types import ItemMeta, SequenceDataset, Split

ASPECTS = {
    1: ("Healthy recipes and quick dinners.", "Great recipes"),
    2: ("Astronomy news and physics articles.", "Rocket science"),
    3: ("Car reviews and engine tests every month.", "Car reviews"),
    4: ("Garden tips, seed catalogues and pruning advice.", "Garden tips"),
}
LEAK_TEST, LEAK_VALID = "zyzzyva", "quokka"
# leave-one-out: the first two items of each user are training events, the third validation, the last test;
# every item is a training event for three users and held out for the other three
SEQUENCES = [[1, 2, 3, 4], [2, 3, 4, 1], [3, 4, 1, 2], [4, 1, 2, 3], [1, 3, 2, 4], [2, 4, 3, 1]]


def _review(u: int, i: int, pos: int, n: int) -> tuple[str, str]:
    text, summary = ASPECTS[i]
    text = f"{text} Reader {u} writes: the layout is clear."
    if (u, pos) == (0, n - 1):
        return f"{text} The Zyzzyva column! {LEAK_TEST} {LEAK_TEST} {LEAK_TEST}.", "Zyzzyva"
    if (u, pos) == (1, n - 2):
        return f"{text} The Quokka feature! {LEAK_VALID} {LEAK_VALID} {LEAK_VALID}.", "Quokka"
    return text, summary


@pytest.fixture(scope="session")
def review_dataset() -> SequenceDataset:
    seqs = [np.array(s, dtype=np.int64) for s in SEQUENCES]
    reviews = {
        (u, int(i)): _review(u, int(i), p, len(s)) for u, s in enumerate(seqs) for p, i in enumerate(s)
    }
    items = [ItemMeta(raw_id=f"m{i}", title=f"Magazine {i}", categories=["Magazines"]) for i in ASPECTS]
    times = [np.arange(len(s), dtype=np.int64) * 100 for s in seqs]
    return SequenceDataset("toy-reviews", [f"u{u}" for u in range(len(seqs))], items, seqs, times, reviews)


@pytest.fixture(scope="session")
def review_split(review_dataset: SequenceDataset) -> Split:
    return leave_one_out(review_dataset)


GENRE_OF = {1: "Comedy", 2: "Drama", 3: "Comedy", 4: "Drama", 5: "Western", 6: "Western"}


@pytest.fixture(scope="session")
def movie_dataset() -> SequenceDataset:
    """No reviews (MovieLens-like): titles carry the year; "Western" films are only ever held out."""
    titles = {1: "Funny Farm (1988)", 2: "Sad Story, The (1995)", 3: "Laugh Riot (1994)",
              4: "Long Goodbye (1973)", 5: "High Noon Redux (1952)", 6: "Dusty Trail (1956)"}  # fmt: skip
    items = [ItemMeta(raw_id=str(i), title=t, categories=[GENRE_OF[i]]) for i, t in titles.items()]
    seqs = [np.array(s, dtype=np.int64) for s in ([1, 2, 3, 5, 6], [2, 4, 1, 6, 5], [3, 1, 4, 5, 6])]
    times = [np.arange(len(s), dtype=np.int64) for s in seqs]
    return SequenceDataset("toy-movies", ["a", "b", "c"], items, seqs, times)


TOY_ASPECTS = {"Space": "Rockets, planets and brave astronauts.", "Romance": "Love letters and a wedding.",
               "Horror": "Ghosts in a haunted house.", "Cartoon": "Talking animals in bright colours."}


@pytest.fixture(scope="session")
def toy_review_dataset(toy_dataset: SequenceDataset) -> SequenceDataset:
    """The shared 30-user toy dataset (tests/training/llm/conftest.py) with a review at every event: the
    genre's aspects plus the reader's name, so item and user labels name the genre's aspects."""
    reviews = {}
    for u, seq in enumerate(toy_dataset.sequences):
        for i in map(int, seq):
            genre = toy_dataset.items[i - 1].categories[0]
            reviews[(u, i)] = (f"{TOY_ASPECTS[genre]} Reader {u} enjoyed story {i}.", f"{genre} fan")
    return SequenceDataset("toy-reviews-30", toy_dataset.user_ids, toy_dataset.items, toy_dataset.sequences,
                           toy_dataset.timestamps, reviews)
