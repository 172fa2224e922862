"""ReLRec's three training tasks (Na et al., Findings of EMNLP 2024): next-item recommendation plus the
reconstruction of user and item pseudo-labels (labels.py), which keeps the fine-tuned LLM writing language.

- next item: DELRec stage 2's ranking question, shared as is (`rec_items`: the next training item among
  random items the user never had; the answer is a label token of the shared ranker);
- user label: the user's training history (titles, oldest first) -> the user's pseudo-label;
- item label: an item's title -> the item's pseudo-label.

Both reconstruction tasks are text tasks (training/llm/core/text_task.py): the loss is the cross-entropy of
the label's tokens. Templates are ours (the paper's are not public). Histories are the training sequence
only: validation and test items never enter a prompt, as the labels never saw their reviews.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np

from recbundle.rerank import item_title
from training.data.types import Split
from training.llm.core.text_task import TextItem
from training.llm.delrec.tasks import protocol_items, rec_items
from training.llm.relrec.labels import PseudoLabels

__all__ = ["item_label_items", "protocol_items", "rec_items", "user_label_items"]

USER_INSTRUCTION = (
    "A user interacted with these items, oldest first:\n{history}\n\n"
    "Describe this user's interests in a few key phrases, separated by semicolons."
)
ITEM_INSTRUCTION = "Item: {title}\n\nDescribe this item in a few key phrases, separated by semicolons."


def user_label_items(split: Split, labels: PseudoLabels, users: Iterable[int], history_items: int,
                     titles: Sequence[str | None], max_chars: int = 60) -> list[TextItem]:
    """One question per user with a label: the newest `history_items` training items -> the user's label."""
    out = []
    for u in map(int, users):
        label, seq = labels.user.get(u), split.train[u]
        if not label or len(seq) == 0:
            continue
        shown = seq[-history_items:].tolist()
        history = "\n".join(f"- {item_title(titles[i], i, max_chars)}" for i in shown)
        out.append(TextItem(USER_INSTRUCTION.format(history=history), label, "user"))
    return out


def item_label_items(labels: PseudoLabels, titles: Sequence[str | None], max_chars: int = 60,
                     items: Iterable[int] | None = None) -> list[TextItem]:
    """One question per labelled item (of `items`, default all): its title -> its label."""
    ids = sorted(labels.item) if items is None else [int(i) for i in items if int(i) in labels.item]
    prompts = {i: ITEM_INSTRUCTION.format(title=item_title(titles[i], i, max_chars)) for i in ids}
    return [TextItem(prompts[i], labels.item[i], "item") for i in ids]


def sample(ids: np.ndarray, n: int | None, seed: int) -> np.ndarray:
    """A seeded subset of `ids` (sorted), or all of them."""
    if n is None or n >= len(ids):
        return ids
    return np.sort(np.random.default_rng(seed).choice(ids, size=n, replace=False))
