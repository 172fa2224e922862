"""The candidate-label ranker: one prefill ranks C candidates.

A prompt (recbundle/rerank.py, shared with the service) lists the user's recent history and C candidates,
each under a one-token label (A, B, ...). The score of candidate i is the next-token logit of label i at the
answer position, log-softmax-normalised over the C labels only (DELRec arXiv 2406.11156 ranks a candidate
set with the LLM; scoring labels instead of generating titles makes one forward pass rank all of them).
Only the C label rows of the output embedding are multiplied, never the 49,152-way vocabulary.

`title_loglik` is the slow reference (sum of log-probabilities of each candidate's title after the prompt,
C continuations on a shared KV cache) that the label scores are compared against in the reports.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from recbundle.rerank import RerankSpec, label_token_ids, rank_prompt
from training.device import model_device
from training.llm.core.model import decoder_of, pad_batch
from training.llm.core.soft_prompt import SoftPrompt
from training.train import distributed


@dataclass
class RankItem:
    """One ranking question: a history (dense ids, oldest first), candidates, and which one is right.
    `instruction` and `fields` select a training task's own wording (None: the serving prompt)."""

    history: list[int]
    candidates: list[int]
    target: int  # index into `candidates`; -1 when unknown (serving)
    task: str = "rec"
    instruction: str | None = None
    fields: dict[str, str] = field(default_factory=dict)

    def shuffled(self, rng: np.random.Generator) -> RankItem:
        """The same question with the candidates in a random order (training: no position to learn)."""
        order = rng.permutation(len(self.candidates))
        cands = [self.candidates[i] for i in order]
        target = int(np.flatnonzero(order == self.target)[0]) if self.target >= 0 else -1
        return RankItem(self.history, cands, target, self.task, self.instruction, self.fields)

    def reversed(self) -> RankItem:
        """Candidates in reverse order (the position-bias check)."""
        n = len(self.candidates)
        target = n - 1 - self.target if self.target >= 0 else -1
        return RankItem(self.history, self.candidates[::-1], target, self.task, self.instruction, self.fields)


class LabelRanker:
    """Renders RankItems with the shared prompt and scores them with a causal LM (PEFT-wrapped or not)."""

    def __init__(self, tokenizer: Any, titles: Sequence[str | None], spec: RerankSpec) -> None:
        self.tokenizer = tokenizer
        self.titles = titles  # dense id -> catalogue title (index 0 unused)
        self.spec = spec
        self.label_ids = torch.tensor(label_token_ids(tokenizer, spec.labels[: spec.n_candidates]))
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id

    def prompt_text(self, item: RankItem) -> str:
        pairs = [(int(i), self.titles[int(i)]) for i in item.history]
        cands = [(int(i), self.titles[int(i)]) for i in item.candidates]
        return rank_prompt(self.tokenizer, pairs, cands, self.spec, item.instruction, **item.fields)

    def prompt_ids(self, item: RankItem) -> list[int]:
        return list(self.tokenizer(self.prompt_text(item), add_special_tokens=False)["input_ids"])

    def logits(self, model: Any, items: Sequence[RankItem], soft: SoftPrompt | None = None) -> torch.Tensor:
        """(B, C) label logits at each prompt's answer position; gradients flow when enabled. A question with
        m < C candidates gets -inf past its m labels, so it is normalised over the labels it shows (as the
        service does when it reranks fewer than C items)."""
        logits = label_logits(model, [self.prompt_ids(it) for it in items], self.label_ids, self.pad_id, soft)
        shown = torch.tensor([len(it.candidates) for it in items], device=logits.device)
        hidden = torch.arange(logits.shape[1], device=logits.device).unsqueeze(0) >= shown.unsqueeze(1)
        return logits.masked_fill(hidden, float("-inf")) if bool(hidden.any()) else logits

    def loss(self, model: Any, items: Sequence[RankItem], soft: SoftPrompt | None = None) -> torch.Tensor:
        """Cross-entropy of the right label among the C labels, batch mean."""
        logits = self.logits(model, items, soft)
        target = torch.tensor([it.target for it in items], device=logits.device)
        return F.cross_entropy(logits.float(), target)

    @torch.no_grad()
    def scores(
        self, model: Any, items: Sequence[RankItem], soft: SoftPrompt | None = None, batch_size: int = 8
    ) -> np.ndarray:
        """(N, C) log-probabilities over the C labels for every item (eval mode), in `items` order. Under
        torchrun each rank scores its share and every rank gets all rows (every rank must call this)."""
        model.eval()
        world = distributed.current()
        mine = distributed.share(items, world)
        out = [np.zeros((0, len(self.label_ids)), dtype=np.float32)]
        for start in range(0, len(mine), batch_size):
            logits = self.logits(model, mine[start : start + batch_size], soft).float()
            out.append(torch.log_softmax(logits, dim=-1).cpu().numpy())
        return distributed.gather_rows(np.concatenate(out), world)


def label_logits(
    model: Any, prompts: Sequence[list[int]], label_ids: torch.Tensor, pad_id: int, soft: SoftPrompt | None
) -> torch.Tensor:
    """(B, C) logits of the label tokens after each prompt: one prefill per prompt, right-padded so real
    tokens keep positions 0..n-1 (as the service's single-prompt calls see them)."""
    device = model_device(model)
    ids, mask = pad_batch(prompts, pad_id, device)  # (B, T)
    embeds = model.get_input_embeddings()(ids)  # (B, T, H)
    if soft is not None:
        embeds, mask = soft(embeds, mask)  # (B, N + T, H)
    hidden = decoder_of(model)(inputs_embeds=embeds, attention_mask=mask, use_cache=False).last_hidden_state
    last = mask.sum(1) - 1  # right padding: each prompt's last real position
    h = hidden[torch.arange(hidden.shape[0], device=device), last]  # (B, H)
    head = model.get_output_embeddings()
    rows = label_ids.to(device)
    logits = h @ head.weight[rows].T  # (B, C)
    if getattr(head, "bias", None) is not None:
        logits = logits + head.bias[rows]
    return logits


@torch.no_grad()
def title_loglik(model: Any, ranker: LabelRanker, item: RankItem, soft: SoftPrompt | None = None) -> np.ndarray:
    """(C,) sum of log-probabilities of each candidate's title as the answer after the prompt: the prompt is
    prefilled once and its KV cache shared by the C continuations."""
    from recbundle.rerank import item_title

    model.eval()
    device = model_device(model)
    prompt = torch.tensor([ranker.prompt_ids(item)], device=device)
    embeds = model.get_input_embeddings()(prompt)
    mask = torch.ones_like(prompt)
    if soft is not None:
        embeds, mask = soft(embeds, mask)
    out = model(inputs_embeds=embeds, attention_mask=mask, use_cache=True)
    n = len(item.candidates)
    first = torch.log_softmax(out.logits[0, -1].float(), -1)  # (V,) for the first title token
    max_chars = ranker.spec.prompt.max_title_chars
    titles = [item_title(ranker.titles[c], c, max_chars) for c in item.candidates]
    toks = [ranker.tokenizer(t, add_special_tokens=False)["input_ids"] or [ranker.pad_id] for t in titles]
    cache = out.past_key_values
    cache.batch_repeat_interleave(n)
    ids, cmask = pad_batch(toks, ranker.pad_id, device)  # (C, L)
    p = mask.shape[1]
    positions = torch.arange(p, p + ids.shape[1], device=device).unsqueeze(0).expand(n, -1)
    full_mask = torch.cat([torch.ones((n, p), dtype=cmask.dtype, device=device), cmask], dim=1)
    cont = model(input_ids=ids, attention_mask=full_mask, position_ids=positions, past_key_values=cache)
    logp = torch.log_softmax(cont.logits.float(), -1)  # (C, L, V): position j predicts token j + 1
    scores = np.zeros(n, dtype=np.float64)
    for c, t in enumerate(toks):
        scores[c] = float(first[t[0]]) + sum(float(logp[c, j - 1, t[j]]) for j in range(1, len(t)))
    return scores
