"""ReLRec's multi-task LoRA fine-tune (Na et al., Findings of EMNLP 2024): one adapter learns next-item
ranking and, beside it, to reconstruct user and item pseudo-labels; the weighted sum of the three losses is
minimised by the shared loop (training/llm/core/tuning.py) through the shared adapter builder
(training/llm/core/adapters.py, also DELRec stage 2's). `reconstruction=False` gives the ablation, the plain
next-item fine-tune: the same "rec" questions, batches and steps, without the label tasks.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from training.data.types import Split
from training.llm.core.adapters import tune_adapter
from training.llm.core.ranker import LabelRanker, RankItem
from training.llm.core.text_task import TextScorer
from training.llm.core.tuning import TaskItem, TuneResult
from training.llm.relrec import tasks
from training.llm.relrec.config import RelRecConfig
from training.llm.relrec.labels import PseudoLabels

META = "relrec_tune.json"


def build_tasks(cfg: RelRecConfig, split: Split, labels: PseudoLabels, users: np.ndarray,
                titles: Sequence[str | None], seed: int, reconstruction: bool) -> dict[str, list[TaskItem]]:
    """The training questions: "rec" always; "user" and "item" (label reconstruction) for ReLRec. Drawn
    from training positions and training-period labels only."""
    rec: list[TaskItem] = list(tasks.rec_items(split, users, cfg.examples_per_user, cfg.n_candidates, seed))
    if not reconstruction:
        return {"rec": rec}
    user: list[TaskItem] = list(tasks.user_label_items(split, labels, users, cfg.history_items, titles,
                                                       cfg.max_title_chars))
    item_ids = tasks.sample(np.array(sorted(labels.item), dtype=np.int64), cfg.max_label_items, seed)
    item: list[TaskItem] = list(tasks.item_label_items(labels, titles, cfg.max_title_chars, item_ids))
    return {"rec": rec, "user": user, "item": item}


def text_scorer(tokenizer: Any, cfg: RelRecConfig) -> TextScorer:
    return TextScorer(tokenizer, max_target_tokens=cfg.max_label_tokens)


def tune_relrec(model: Any, ranker: LabelRanker, task_items: dict[str, list[TaskItem]], cfg: RelRecConfig,
                seed: int, valid: Sequence[RankItem] = ()) -> tuple[Any, TuneResult]:
    """LoRA on `model` (a plain causal LM, frozen) over the given tasks; returns (PEFT model, record)."""
    return tune_adapter(model, ranker, task_items, cfg.lora(), cfg.lora_kind, cfg.tune(seed), None, valid,
                        text_scorer(ranker.tokenizer, cfg))


def save_adapter(peft_model: Any, out: Path, meta: dict[str, Any]) -> Path:
    """A standard PEFT folder (adapter_config.json + adapter_model.safetensors) plus the training record."""
    peft_model.save_pretrained(out)
    (out / META).write_text(json.dumps(meta, indent=1, default=str))
    return out
