"""LoRA tuning on the shared loop: a peft adapter config from our settings (LoRA or AdaLoRA), the LLM
frozen, the adapter trained on any mix of ranking and text tasks (tuning.py). DELRec stage 2 trains it on
the recommendation task alone; ReLRec adds pseudo-label reconstruction; the ablations drop tasks.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from training.llm.core.model import LoraSettings
from training.llm.core.ranker import LabelRanker, RankItem
from training.llm.core.soft_prompt import SoftPrompt
from training.llm.core.text_task import TextScorer
from training.llm.core.tuning import TaskItem, TuneConfig, TuneResult, planned_steps, train_ranker


def build_adapter_config(s: LoraSettings, kind: str, total_steps: int) -> Any:
    """A peft LoraConfig or AdaLoraConfig (pure; AdaLoRA's rank schedule needs the step count)."""
    from peft import AdaLoraConfig, LoraConfig

    if kind == "lora":
        return LoraConfig(r=s.r, lora_alpha=s.alpha, lora_dropout=s.dropout,
                          target_modules=list(s.target_modules), bias="none")
    if kind == "adalora":
        return AdaLoraConfig(init_r=2 * s.r, target_r=s.r, lora_alpha=s.alpha, lora_dropout=s.dropout,
                             target_modules=list(s.target_modules), total_step=max(total_steps, 2),
                             tinit=0, tfinal=0)
    raise ValueError(f"lora_kind must be 'lora' or 'adalora', not {kind!r}")


def tune_adapter(
    model: Any,
    ranker: LabelRanker,
    tasks: Mapping[str, Sequence[TaskItem]],
    lora: LoraSettings,
    kind: str,
    cfg: TuneConfig,
    soft: SoftPrompt | None = None,
    valid: Sequence[RankItem] = (),
    text: TextScorer | None = None,
) -> tuple[Any, TuneResult]:
    """LoRA-tune `model` (a plain causal LM) on `tasks`; the base weights and the soft prompt stay frozen.
    Returns the PEFT model (LoRA unmerged) and the training record."""
    from peft import get_peft_model

    for p in model.parameters():
        p.requires_grad_(False)
    if soft is not None:
        soft.vectors.requires_grad_(False)
    torch.manual_seed(cfg.seed)  # the adapter's random init: the same for every run of one seed
    total_steps = planned_steps(tasks, cfg) * cfg.epochs
    peft_model = get_peft_model(model, build_adapter_config(lora, kind, total_steps))
    params = [p for p in peft_model.parameters() if p.requires_grad]
    # AdaLoRA reallocates rank from the gradients after each step (peft's update_and_allocate)
    on_step = peft_model.base_model.update_and_allocate if kind == "adalora" else None
    result = train_ranker(peft_model, ranker, tasks, params, cfg, soft, valid, on_step, text)
    return peft_model, result


def load_adapter(base: Any, folder: Path) -> Any:
    from peft import PeftModel

    return PeftModel.from_pretrained(base, str(folder)).eval()
