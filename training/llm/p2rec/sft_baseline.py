"""The instance-level SFT baseline that P2Rec's efficiency claim is measured against.

Standard LLM-for-recommendation SFT builds one example per history PREFIX: the prompt lists seq[:t] and the
label is the title of seq[t], with the language-model loss on the label tokens only (prompt masked with
-100). A user with n training items gives n - 1 examples, where P2Rec's user-level stage (a) gives one.
An epoch over all prefixes is far too slow to run here, so we time a seeded subsample of N examples
(forward + backward + AdamW step, LoRA as in stage a) and extrapolate to all prefixes.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from training.device import model_device
from training.llm.core.model import LoraSettings, attach_lora, pad_batch
from training.llm.core.prompts import PromptConfig, user_prompt_ids

log = logging.getLogger(__name__)
IGNORE = -100


@dataclass
class SFTTiming:
    n_prefixes: int  # instance-level examples in one epoch (all prefixes of all training sequences)
    n_measured: int
    s_per_example: float
    epoch_s_estimate: float
    mean_tokens: float  # prompt + label tokens per measured example

    def ratio(self, user_level_epoch_s: float) -> float:
        """User-level epoch time / instance-level epoch time (the efficiency claim: << 1)."""
        return user_level_epoch_s / self.epoch_s_estimate if self.epoch_s_estimate else float("nan")


def all_prefixes(train: Sequence[np.ndarray]) -> list[tuple[int, int]]:
    """(user, t) for every prefix seq[:t] (t >= 1) that has a next item seq[t]."""
    return [(u, t) for u, s in enumerate(train) for t in range(1, len(s))]


def sft_example(
    history: np.ndarray, target: int, texts: Sequence[str], cfg: PromptConfig, tokenizer: Any
) -> tuple[list[int], list[int]]:
    """(input ids, labels): prompt + next-item title + eos, labels masked on the prompt."""
    prompt = user_prompt_ids(history, texts, cfg, tokenizer)
    answer = list(tokenizer(texts[target], add_special_tokens=False)["input_ids"]) + [tokenizer.eos_token_id]
    return prompt + answer, [IGNORE] * len(prompt) + answer


def instance_level_sft_epoch_time(
    model: Any,
    tokenizer: Any,
    train: Sequence[np.ndarray],
    texts: Sequence[str],
    prompt_cfg: PromptConfig,
    n_examples: int = 32,
    batch_size: int = 8,
    lr: float = 2e-4,
    lora: LoraSettings | None = None,
    seed: int = 0,
    warmup_batches: int = 1,
) -> SFTTiming:
    """Time instance-level SFT on `n_examples` random prefixes and extrapolate one epoch.

    `model` is a causal LM that this function TRAINS (LoRA is attached unless it is PEFT-wrapped already):
    give it a fresh copy, not the stage (a) model. The loss is the causal-LM forward with labels, as a
    standard SFT trainer computes it (vocabulary logits included: that is what the baseline costs)."""
    if not hasattr(model, "peft_config"):
        model = attach_lora(model, lora or LoraSettings())
    pairs = all_prefixes(train)
    if not pairs:
        return SFTTiming(0, 0, 0.0, 0.0, 0.0)
    rng = np.random.default_rng(seed)
    pick = rng.choice(
        len(pairs), size=min(n_examples + warmup_batches * batch_size, len(pairs)), replace=False
    )
    examples = []
    for j in pick:
        u, t = pairs[j]
        examples.append(sft_example(train[u][:t], int(train[u][t]), texts, prompt_cfg, tokenizer))
    device = model_device(model)
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=lr)
    model.train()
    measured, tokens, wall = 0, 0, 0.0
    for b, start in enumerate(range(0, len(examples), batch_size)):
        chunk = examples[start : start + batch_size]
        ids, mask = pad_batch([c[0] for c in chunk], tokenizer.pad_token_id, device)
        labels, _ = pad_batch([c[1] for c in chunk], IGNORE, device)
        t0 = time.perf_counter()
        loss = model(input_ids=ids, attention_mask=mask, labels=labels, use_cache=False).loss
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if b >= warmup_batches or len(examples) <= batch_size:
            wall += time.perf_counter() - t0
            measured += len(chunk)
            tokens += sum(len(c[0]) for c in chunk)
    model.eval()
    per = wall / max(1, measured)
    log.info(
        "instance-level SFT: %.3f s/example over %d examples, %d prefixes -> %.0f s/epoch",
        per,
        measured,
        len(pairs),
        per * len(pairs),
    )
    return SFTTiming(len(pairs), measured, per, per * len(pairs), tokens / max(1, measured))
