"""DELRec stage 2, LLM-based sequential recommendation (arXiv 2406.11156 §3.3): the distilled soft prompt is
frozen and the LLM is tuned with LoRA (peft; AdaLoRA as an option) to rank the next item among candidates.
Without a soft prompt the same code gives the report's ablation (stage 2 alone)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from training.llm.core.model import LoraSettings
from training.llm.core.ranker import LabelRanker, RankItem
from training.llm.core.soft_prompt import SoftPrompt
from training.llm.core.tuning import TuneConfig, TuneResult, train_ranker


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


def tune_ranker(
    model: Any,
    ranker: LabelRanker,
    items: list[RankItem],
    lora: LoraSettings,
    kind: str,
    cfg: TuneConfig,
    soft: SoftPrompt | None,
    valid: Sequence[RankItem] = (),
) -> tuple[Any, TuneResult]:
    """LoRA-tune `model` (a plain causal LM) on the recommendation task; the soft prompt stays frozen.
    Returns the PEFT model (LoRA unmerged) and the training record."""
    from peft import get_peft_model

    for p in model.parameters():
        p.requires_grad_(False)
    if soft is not None:
        soft.vectors.requires_grad_(False)
    steps = -(-len(items) // cfg.batch_size) * cfg.epochs
    peft_model = get_peft_model(model, build_adapter_config(lora, kind, steps))
    params = [p for p in peft_model.parameters() if p.requires_grad]
    # AdaLoRA reallocates rank from the gradients after each step (peft's update_and_allocate)
    on_step = peft_model.base_model.update_and_allocate if kind == "adalora" else None
    result = train_ranker(peft_model, ranker, {"rec": items}, params, cfg, soft, valid, on_step)
    return peft_model, result


def save_adapter(peft_model: Any, out: Path, meta: dict[str, Any]) -> Path:
    """A standard PEFT folder (adapter_config.json + adapter_model.safetensors) plus our meta."""
    peft_model.save_pretrained(out)
    (out / "delrec_stage2.json").write_text(json.dumps(meta, indent=1, default=str))
    return out


def load_adapter(base: Any, folder: Path) -> Any:
    from peft import PeftModel

    return PeftModel.from_pretrained(base, str(folder)).eval()
