"""Text tasks for the shared training loop (tuning.py): a prompt and a target text, loss = token-level
cross-entropy on the target tokens only, prompt tokens masked (the usual supervised fine-tuning loss; ReLRec,
Na et al., Findings of EMNLP 2024, trains the LLM to *reconstruct* user and item pseudo-labels this way next
to the ranking task). The same code scores held-out text, so perplexity and the training loss agree.

Chat items are rendered with the serving chat template (`recbundle.rerank.render_chat`, the one the ranker
uses); the target is the assistant's answer and ends with the tokenizer's end-of-turn token, so the model
also learns where an answer stops. Plain items (`chat=False`) are raw text after one start token (BOS).

Like the ranker, only the positions that predict a target token go through the output embedding: the
49,152-way head at every position is most of a forward pass's cost on these CPUs (FIELD-NOTES).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from recbundle.rerank import RankPrompt, render_chat
from training.device import model_device
from training.llm.core.model import decoder_of, pad_batch
from training.llm.core.soft_prompt import SoftPrompt


@dataclass
class TextItem:
    """One text question: write `target` after `prompt`. `system` None = the ranking prompt's system line."""

    prompt: str  # the user message (chat), or text the target continues (plain; may be "")
    target: str
    task: str = "text"
    system: str | None = None
    chat: bool = True


class TextScorer:
    """Tokenises TextItems (prompt and target separately, as generation sees them) and scores the target."""

    def __init__(self, tokenizer: Any, max_target_tokens: int = 64, end_of_turn: bool = True) -> None:
        self.tokenizer = tokenizer
        self.max_target_tokens = max_target_tokens
        self.end_of_turn = end_of_turn  # append EOS to chat targets (the answer's end is learnt too)
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
        bos = tokenizer.bos_token_id
        self.start_id = bos if bos is not None else tokenizer.eos_token_id  # plain text starts after it

    def _ids(self, text: str) -> list[int]:
        return list(self.tokenizer(text, add_special_tokens=False)["input_ids"]) if text else []

    def prompt_text(self, item: TextItem) -> str:
        if not item.chat:
            return item.prompt
        return render_chat(self.tokenizer, item.system or RankPrompt().system, item.prompt)

    def encode(self, item: TextItem) -> tuple[list[int], list[int]]:
        """(prompt ids, target ids): the prompt is never empty (a plain item starts with BOS), so every
        target token has a position that predicts it."""
        prompt = self._ids(self.prompt_text(item)) if item.chat else [self.start_id, *self._ids(item.prompt)]
        target = self._ids(item.target)[: self.max_target_tokens]
        if item.chat and self.end_of_turn:
            target.append(self.tokenizer.eos_token_id)
        return prompt, target

    def target_logprobs(
        self, model: Any, items: Sequence[TextItem], soft: SoftPrompt | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(K,) log-probability of every target token of the batch and (K,) the index of its item; one
        right-padded forward (real tokens keep positions 0..n-1); gradients flow when enabled."""
        device = model_device(model)
        encoded = [self.encode(it) for it in items]
        ids, mask = pad_batch([p + t for p, t in encoded], self.pad_id, device)  # (B, T)
        embeds = model.get_input_embeddings()(ids)  # (B, T, H)
        offset = 0
        if soft is not None:
            embeds, mask = soft(embeds, mask)  # (B, N + T, H)
            offset = soft.n_tokens
        decoder = decoder_of(model)
        hidden = decoder(inputs_embeds=embeds, attention_mask=mask, use_cache=False).last_hidden_state
        # position j predicts token j + 1: target token k of item b sits at offset + len(prompt) + k
        rows = [b for b, (_, t) in enumerate(encoded) for _ in t]
        cols = [offset + len(p) + k - 1 for p, t in encoded for k in range(len(t))]
        tokens = torch.tensor([x for _, t in encoded for x in t], dtype=torch.long, device=device)
        owner = torch.tensor(rows, dtype=torch.long, device=device)
        h = hidden[owner, torch.tensor(cols, dtype=torch.long, device=device)]  # (K, H)
        logits = model.get_output_embeddings()(h).float()  # (K, V)
        return torch.log_softmax(logits, -1).gather(1, tokens.unsqueeze(1)).squeeze(1), owner

    def loss(self, model: Any, items: Sequence[TextItem], soft: SoftPrompt | None = None) -> torch.Tensor:
        """Mean negative log-likelihood per target token over the batch (token-weighted, as Hugging Face's
        causal-LM loss with prompt labels set to -100)."""
        return self.loss_and_count(model, items, soft)[0]

    def loss_and_count(self, model: Any, items: Sequence[TextItem], soft: SoftPrompt | None = None) -> tuple[torch.Tensor, int]:
        """(`loss`, the number of target tokens it averages over)."""
        logp, _ = self.target_logprobs(model, items, soft)
        return -logp.sum() / max(1, logp.numel()), logp.numel()

    @torch.no_grad()
    def nll(
        self, model: Any, items: Sequence[TextItem], soft: SoftPrompt | None = None, batch_size: int = 8
    ) -> tuple[np.ndarray, np.ndarray]:
        """(N,) summed negative log-likelihood of each item's target and (N,) its token count (eval mode)."""
        model.eval()
        sums, counts = np.zeros(len(items)), np.zeros(len(items), dtype=np.int64)
        for start in range(0, len(items), batch_size):
            chunk = items[start : start + batch_size]
            logp, owner = self.target_logprobs(model, chunk, soft)
            idx = owner.cpu().numpy() + start
            np.add.at(sums, idx, -logp.double().cpu().numpy())
            np.add.at(counts, idx, 1)
        return sums, counts


def perplexity(sums: np.ndarray, counts: np.ndarray) -> float:
    """exp of the token-weighted mean negative log-likelihood (every token counts once, whatever its text)."""
    n = int(counts.sum())
    return float(np.exp(sums.sum() / n)) if n else float("nan")
