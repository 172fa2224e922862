"""DELRec stage 1, distilling the SR teacher's patterns into soft prompts (arXiv 2406.11156 §3.2): the LLM
is frozen, N soft-prompt vectors are the only trainable parameters, and the RPS and TA tasks are trained
together under the paper's dynamic loss weighting (training/llm/core/tuning.py cites the formula)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from training.llm.core.ranker import LabelRanker, RankItem
from training.llm.core.soft_prompt import SoftPrompt
from training.llm.core.tuning import TuneConfig, TuneResult, train_ranker


def freeze(model: Any) -> Any:
    for p in model.parameters():
        p.requires_grad_(False)
    return model


def distill_soft_prompt(
    model: Any,
    ranker: LabelRanker,
    rps: list[RankItem],
    ta: list[RankItem],
    n_tokens: int,
    cfg: TuneConfig,
    valid: Sequence[RankItem] = (),
) -> tuple[SoftPrompt, TuneResult]:
    """Train a fresh soft prompt on RPS + TA with `model` frozen; returns it (on the model's device)."""
    freeze(model)
    embeddings = model.get_input_embeddings().weight
    soft = SoftPrompt.from_vocabulary(embeddings, n_tokens, cfg.seed).to(embeddings.device)
    tasks = {name: items for name, items in (("rps", rps), ("ta", ta)) if items}
    result = train_ranker(model, ranker, tasks, [soft.vectors], cfg, soft, valid)
    soft.vectors.requires_grad_(False)
    return soft, result
