"""DELRec stage 2, LLM-based sequential recommendation (arXiv 2406.11156 §3.3): the distilled soft prompt is
frozen and the LLM is tuned with LoRA (peft; AdaLoRA as an option) to rank the next item among candidates.
Without a soft prompt the same code gives the report's ablation (stage 2 alone). The adapter machinery is
shared with ReLRec (training/llm/core/adapters.py)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from training.llm.core.adapters import build_adapter_config, load_adapter, tune_adapter
from training.llm.core.model import LoraSettings
from training.llm.core.ranker import LabelRanker, RankItem
from training.llm.core.soft_prompt import SoftPrompt
from training.llm.core.tuning import TuneConfig, TuneResult

__all__ = ["build_adapter_config", "load_adapter", "save_adapter", "tune_ranker"]


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
    return tune_adapter(model, ranker, {"rec": items}, lora, kind, cfg, soft, valid)


def save_adapter(peft_model: Any, out: Path, meta: dict[str, Any]) -> Path:
    """A standard PEFT folder (adapter_config.json + adapter_model.safetensors) plus our meta."""
    peft_model.save_pretrained(out)
    (out / "delrec_stage2.json").write_text(json.dumps(meta, indent=1, default=str))
    return out
