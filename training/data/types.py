"""Plain data records shared by the readers, the preprocessing and the models.

Raw ids stay strings as the source files spell them; after preprocessing every item gets a dense id in
1..n_items, and 0 is the padding id everywhere (embedding row 0, left padding of histories).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

PAD = 0


@dataclass(frozen=True)
class Interaction:
    """One user-item event as read from a source file."""

    user: str
    item: str
    timestamp: int
    rating: float | None = None
    review: str | None = None  # review text (Amazon); None where the source has none
    summary: str | None = None  # review title (Amazon)


@dataclass
class ItemMeta:
    """Item side information as read from a source file, keyed by the raw item id."""

    raw_id: str
    title: str = ""
    description: str = ""
    categories: list[str] = field(default_factory=list)  # ML genres or Amazon category path
    brand: str = ""
    extra: dict[str, str] = field(default_factory=dict)  # e.g. {"release_date": ...}


@dataclass
class ReadIssues:
    """What a reader skipped or repaired, so nothing is silently wrong. Counts per kind + a few samples."""

    counts: dict[str, int] = field(default_factory=dict)
    samples: dict[str, list[str]] = field(default_factory=dict)

    def add(self, kind: str, sample: str = "", max_samples: int = 5) -> None:
        self.counts[kind] = self.counts.get(kind, 0) + 1
        if sample and len(self.samples.setdefault(kind, [])) < max_samples:
            self.samples[kind].append(sample[:200])

    @property
    def total(self) -> int:
        return sum(self.counts.values())


@dataclass
class RawDataset:
    name: str
    interactions: list[Interaction]
    items: dict[str, ItemMeta]
    issues: ReadIssues = field(default_factory=ReadIssues)


@dataclass
class SequenceDataset:
    """Chronological implicit-feedback sequences with dense ids (0 = padding).

    `sequences[u]` is user u's item ids in time order (int64), `timestamps[u]` the matching unix times.
    `items[i - 1]` is the catalogue entry of dense item id i.
    """

    name: str
    user_ids: list[str]  # raw user id per dense user index
    items: list[ItemMeta]  # catalogue, dense id i -> items[i - 1]
    sequences: list[np.ndarray]
    timestamps: list[np.ndarray]
    # (dense user index, dense item id) -> review text / summary, for the review-based stages (ReLRec)
    reviews: dict[tuple[int, int], tuple[str, str]] = field(default_factory=dict)
    stats: dict[str, float] = field(default_factory=dict)

    @property
    def n_items(self) -> int:
        return len(self.items)

    @property
    def n_users(self) -> int:
        return len(self.sequences)


@dataclass
class Split:
    """Leave-one-out split (Kang & McAuley 2018): last item = test, second-to-last = validation.

    `train[u]` is seq[:-2] (what models fit on); validation asks for seq[-2] given seq[:-2]; test asks for
    seq[-1] given seq[:-1] (the validation item is part of the test history). Histories are *not*
    truncated here; models cut to their own max length.
    """

    train: list[np.ndarray]
    valid_history: list[np.ndarray]
    valid_target: np.ndarray  # (U,)
    test_history: list[np.ndarray]
    test_target: np.ndarray  # (U,)
    n_items: int
    # items held out of training (cold-start split, split.py `cold_item_split`): they exist only as test
    # targets, and training never uses them, not even as negatives; None for the usual split
    unseen_items: np.ndarray | None = None
    # per user, the held-out items they consumed before the test target, which the split hid from their
    # histories: the test ranking masks them (full) and never draws them as negatives (sampled)
    test_hidden: list[np.ndarray] | None = None

    @property
    def n_users(self) -> int:
        return len(self.train)
