"""P2Rec's efficiency claim, measured like for like: user-level tuning against instance-level tuning.

User-level (P2Rec stage a): one example per user, the whole-history prompt -> pooled state -> the K-way
head, KL to the user's category distribution. Instance-level: one example per history PREFIX (a user with
n training items gives n - 1), the prefix prompt -> the SAME forward and the SAME head, cross-entropy to the
next item's category. Both sides run in one process on one device with the same LoRA, batch size,
optimiser and prompt settings, so the ratio of epoch times is only the number of examples times their
length. An epoch over all prefixes is too slow to run here, so each side times a seeded subsample of N
examples (forward + backward + AdamW step) and extrapolates.

Also timed, for reference: the usual instance-level SFT (the prefix prompt followed by the next item's
title, the language-model loss on the title tokens, vocabulary logits computed for those positions only).

The measurement is cached under the device's label (training/device.py `device_label`): a CPU time is
never divided by a GPU time.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from training.device import device_label, model_device, synchronize
from training.llm.core.model import LoraSettings, attach_lora, decoder_of, encode, pad_batch
from training.llm.core.prompts import PromptConfig, user_prompt_ids
from training.llm.p2rec.stage_a import stage_loss

log = logging.getLogger(__name__)
IGNORE = -100


@dataclass
class StepTiming:
    n_measured: int  # examples timed (after the warm-up batch)
    s_per_example: float
    mean_tokens: float  # input tokens per timed example


@dataclass
class Efficiency:
    device: str  # device_label of where both sides ran
    n_users: int  # user-level examples per epoch
    n_prefixes: int  # instance-level examples per epoch
    user_level: StepTiming
    instance_level: StepTiming  # same forward and head as user-level
    instance_sft: StepTiming  # prompt + next title, LM loss on the title tokens (for reference)

    @property
    def user_epoch_s(self) -> float:
        return self.user_level.s_per_example * self.n_users

    @property
    def instance_epoch_s(self) -> float:
        return self.instance_level.s_per_example * self.n_prefixes

    @property
    def ratio(self) -> float:
        """User-level epoch time / instance-level epoch time (the efficiency claim: << 1)."""
        return self.user_epoch_s / self.instance_epoch_s if self.instance_epoch_s else float("nan")

    def report(self) -> dict[str, Any]:
        sft_epoch = self.instance_sft.s_per_example * self.n_prefixes
        return asdict(self) | {
            "user_level_epoch_s": self.user_epoch_s,
            "instance_level_epoch_s": self.instance_epoch_s,
            "ratio": self.ratio,
            "instance_sft_epoch_s": sft_epoch,
            "ratio_vs_sft": self.user_epoch_s / sft_epoch if sft_epoch else float("nan"),
        }


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


def label_lm_loss(model: Any, ids: torch.Tensor, mask: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Causal-LM cross-entropy on the labelled tokens, with vocabulary logits only where a label is
    predicted (what a trainer that keeps only the needed logits computes)."""
    hidden = decoder_of(model)(input_ids=ids, attention_mask=mask, use_cache=False).last_hidden_state
    target = labels[:, 1:]
    keep = target != IGNORE
    lm_head = model.get_output_embeddings()
    logits = lm_head(hidden[:, :-1][keep])
    return F.cross_entropy(logits.float(), target[keep])


Step = Callable[[list[int]], torch.Tensor]  # example indices -> loss


def time_steps(step: Step, n: int, batch_size: int, params: list[nn.Parameter], lr: float,
               tokens: Sequence[int], device: torch.device, warmup_batches: int = 1) -> StepTiming:
    """Run `step` over examples 0..n-1 in batches (AdamW over `params`); time all but the warm-up batches."""
    opt = torch.optim.AdamW(params, lr=lr)
    measured, n_tokens, wall = 0, 0, 0.0
    for b, start in enumerate(range(0, n, batch_size)):
        idx = list(range(start, min(n, start + batch_size)))
        synchronize(device)
        t0 = time.perf_counter()
        loss = step(idx)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        synchronize(device)
        if b >= warmup_batches or n <= batch_size:
            wall += time.perf_counter() - t0
            measured += len(idx)
            n_tokens += sum(tokens[i] for i in idx)
    return StepTiming(measured, wall / max(1, measured), n_tokens / max(1, measured))


def measure_efficiency(
    model: Any,
    tokenizer: Any,
    train: Sequence[np.ndarray],
    texts: Sequence[str],
    targets: np.ndarray,
    category_of: np.ndarray,
    prompt_cfg: PromptConfig,
    n_examples: int = 32,
    batch_size: int = 8,
    lr: float = 2e-4,
    lora: LoraSettings | None = None,
    pooling: str = "mean",
    seed: int = 0,
) -> Efficiency:
    """Time user-level and instance-level tuning on `n_examples` seeded examples each (plus one warm-up
    batch) and extrapolate one epoch of each. `model` is a causal LM that this function TRAINS (LoRA is
    attached unless it is PEFT-wrapped already): give it a fresh copy. `targets[u]` is user u's category
    distribution, `category_of` the item -> category map of the same run."""
    if not hasattr(model, "peft_config"):
        model = attach_lora(model, lora or LoraSettings())
    device = model_device(model)
    users = [u for u, s in enumerate(train) if len(s)]
    pairs = all_prefixes(train)
    rng = np.random.default_rng(seed)
    n = n_examples + batch_size  # + the warm-up batch
    pick_users = rng.choice(users, size=min(n, len(users)), replace=False)
    pick_pairs = [pairs[j] for j in rng.choice(len(pairs), size=min(n, len(pairs)), replace=False)] if pairs else []
    k = targets.shape[1]
    head = nn.Linear(int(model.get_base_model().config.hidden_size), k).to(device)
    lora_params = [p for p in model.parameters() if p.requires_grad]
    params = lora_params + list(head.parameters())
    pad = tokenizer.pad_token_id
    model.train()

    def category_step(prompts: list[list[int]], dist: np.ndarray) -> Step:
        def step(idx: list[int]) -> torch.Tensor:
            ids, mask = pad_batch([prompts[i] for i in idx], pad, device)
            logits = head(encode(model, ids, mask, pooling))
            return stage_loss(logits, torch.as_tensor(dist[idx], device=device), "kl")

        return step

    u_prompts = [user_prompt_ids(train[u], texts, prompt_cfg, tokenizer) for u in pick_users]
    user = time_steps(category_step(u_prompts, targets[pick_users].astype(np.float32)), len(u_prompts),
                      batch_size, params, lr, [len(p) for p in u_prompts], device)
    i_prompts = [user_prompt_ids(train[u][:t], texts, prompt_cfg, tokenizer) for u, t in pick_pairs]
    onehot = np.eye(k, dtype=np.float32)[[int(category_of[train[u][t]]) for u, t in pick_pairs]]
    instance = time_steps(category_step(i_prompts, onehot), len(i_prompts), batch_size, params, lr,
                          [len(p) for p in i_prompts], device)
    examples = [sft_example(train[u][:t], int(train[u][t]), texts, prompt_cfg, tokenizer) for u, t in pick_pairs]

    def sft_step(idx: list[int]) -> torch.Tensor:
        ids, mask = pad_batch([examples[i][0] for i in idx], pad, device)
        labels, _ = pad_batch([examples[i][1] for i in idx], IGNORE, device)
        return label_lm_loss(model, ids, mask, labels)

    sft = time_steps(sft_step, len(examples), batch_size, lora_params, lr, [len(e[0]) for e in examples], device)
    model.eval()
    result = Efficiency(device_label(device), len(users), len(pairs), user, instance, sft)
    log.info(
        "efficiency on %s: user-level %.3f s/example x %d, instance-level %.3f s/example x %d -> ratio %.4f",
        result.device, user.s_per_example, len(users), instance.s_per_example, len(pairs), result.ratio,
    )
    return result
