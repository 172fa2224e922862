"""ReLRec's multi-task LoRA on a tiny random Llama: all three tasks train, only LoRA moves, and the plain
ablation gets exactly ReLRec's next-item questions."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from training.data.split import leave_one_out
from training.data.types import SequenceDataset, Split
from training.llm.core.model import load_base
from training.llm.core.ranker import LabelRanker
from training.llm.relrec.config import RelRecConfig
from training.llm.relrec.labels import LabelConfig, PseudoLabels, build_labels
from training.llm.relrec.tune import build_tasks, tune_relrec


@pytest.fixture(scope="module")
def data(toy_review_dataset: SequenceDataset) -> tuple[Split, PseudoLabels, list[str | None]]:
    split = leave_one_out(toy_review_dataset)
    labels = build_labels(toy_review_dataset, split, LabelConfig(extractor="frequent"))
    return split, labels, [None] + [m.title for m in toy_review_dataset.items]


def _cfg(tiny_llm_dir: Path) -> RelRecConfig:
    return RelRecConfig(base_model=str(tiny_llm_dir), device="cpu", n_candidates=8, history_items=3,
                        max_title_chars=24, examples_per_user=1, max_label_items=4, batch_size=2, max_steps=2,
                        lr=0.05, lora_r=4, lora_dropout=0.0, user_weight=0.5, item_weight=2.0)


def test_the_ablation_gets_relrecs_next_item_questions(tiny_llm_dir: Path, data: tuple) -> None:
    split, labels, titles = data
    cfg = _cfg(tiny_llm_dir)
    full = build_tasks(cfg, split, labels, np.arange(6), titles, seed=0, reconstruction=True)
    plain = build_tasks(cfg, split, labels, np.arange(6), titles, seed=0, reconstruction=False)
    assert set(full) == {"rec", "user", "item"} and set(plain) == {"rec"}
    assert plain["rec"] == full["rec"]
    assert len(full["user"]) == 6 and len(full["item"]) == 4
    assert cfg.tune(0).task_weights == {"rec": 1.0, "user": 0.5, "item": 2.0}


def test_multitask_lora_changes_only_lora(tiny_llm_dir: Path, data: tuple) -> None:
    split, labels, titles = data
    cfg = _cfg(tiny_llm_dir)
    model, tok = load_base(cfg.encoder())
    before = {k: v.detach().clone() for k, v in model.state_dict().items()}
    task_items = build_tasks(cfg, split, labels, np.arange(6), titles, seed=0, reconstruction=True)
    peft_model, result = tune_relrec(model, LabelRanker(tok, titles, cfg.spec()), task_items, cfg, seed=0)
    assert set(result.step_loss) == {"rec", "user", "item"}
    assert all(len(v) == 2 for v in result.step_loss.values())  # an epoch = 2 steps (max_steps)
    assert result.step_weight["item"] == [2.0, 2.0]
    changed = 0
    for name, p in peft_model.named_parameters():
        if "lora_" in name:
            changed += int("lora_B" in name and bool(p.abs().sum() > 0))  # B starts at zero
            continue
        key = name.replace("base_model.model.", "").replace(".base_layer", "")
        assert torch.equal(p, before[key]), f"ReLRec changed base weight {key}"
    assert changed > 0
