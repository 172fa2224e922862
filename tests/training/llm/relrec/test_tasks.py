"""ReLRec's questions: label prompts show training items only, targets are the pseudo-labels, and the
next-item task is DELRec's own."""

from __future__ import annotations

import numpy as np

from training.data.types import SequenceDataset, Split
from training.llm.delrec import tasks as delrec_tasks
from training.llm.relrec import tasks
from training.llm.relrec.labels import LabelConfig, build_labels


def test_user_label_questions_show_the_training_history_only(review_dataset: SequenceDataset,
                                                             review_split: Split) -> None:
    labels = build_labels(review_dataset, review_split, LabelConfig(extractor="frequent"))
    titles = [None] + [m.title for m in review_dataset.items]
    items = tasks.user_label_items(review_split, labels, range(review_split.n_users), 3, titles)
    assert len(items) == review_split.n_users
    for u, it in enumerate(items):
        assert it.task == "user" and it.target == labels.user[u]
        shown = {i for i in range(1, 5) if f"Magazine {i}" in it.prompt}
        assert shown == set(review_split.train[u].tolist())  # never the validation or test item


def test_user_label_questions_skip_users_without_a_label(review_dataset: SequenceDataset,
                                                         review_split: Split) -> None:
    labels = build_labels(review_dataset, review_split, LabelConfig(extractor="frequent"))
    del labels.user[0]
    titles = [None] + [m.title for m in review_dataset.items]
    assert len(tasks.user_label_items(review_split, labels, [0, 1], 2, titles)) == 1


def test_item_label_questions(review_dataset: SequenceDataset, review_split: Split) -> None:
    labels = build_labels(review_dataset, review_split, LabelConfig(extractor="frequent"))
    titles = [None] + [m.title for m in review_dataset.items]
    items = tasks.item_label_items(labels, titles)
    assert [it.target for it in items] == [labels.item[i] for i in sorted(labels.item)]
    assert all(f"Magazine {i}" in it.prompt and it.task == "item" for i, it in zip(sorted(labels.item), items,
                                                                                   strict=True))
    assert len(tasks.item_label_items(labels, titles, items=[2, 99])) == 1  # unlabelled ids are skipped


def test_the_next_item_task_is_delrecs() -> None:
    assert tasks.rec_items is delrec_tasks.rec_items
    assert tasks.protocol_items is delrec_tasks.protocol_items
    assert tasks.sample(np.arange(5), None, 0).tolist() == [0, 1, 2, 3, 4]
    assert len(tasks.sample(np.arange(5), 3, 0)) == 3
