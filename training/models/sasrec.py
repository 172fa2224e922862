"""SASRec: self-attentive sequential recommendation (Kang & McAuley, ICDM 2018).

Pre-LN transformer blocks with causal self-attention over left-padded histories; the hidden state at the
last position is the user vector, scored against the (shared) item embedding table. Two losses, as
configured: full-softmax cross-entropy over all items (as in later SASRec re-evaluations, e.g.
Klenitskiy & Vasilev 2023, "Turning Dross Into Gold Loss: is BERT4Rec really better than SASRec?") and the
paper's binary cross-entropy with one sampled negative per position.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from training.data.types import PAD
from training.models.base import Batch, SequentialRecommender


@dataclass
class SASRecConfig:
    n_items: int
    max_len: int = 50
    dim: int = 64
    n_layers: int = 2
    n_heads: int = 1
    dropout: float = 0.2
    loss: Literal["ce", "bce"] = "ce"
    init_std: float = 0.02


class CausalSelfAttention(nn.Module):
    def __init__(self, cfg: SASRecConfig) -> None:
        super().__init__()
        self.n_heads = cfg.n_heads
        self.qkv = nn.Linear(cfg.dim, 3 * cfg.dim)
        self.proj = nn.Linear(cfg.dim, cfg.dim)
        self.dropout = cfg.dropout

    def forward(self, x: torch.Tensor, mask: torch.Tensor, last_only: bool = False) -> torch.Tensor:
        """(B, L, D) -> (B, L, D), or (B, 1, D) for the last query position alone (`last_only`)."""
        B, L, D = x.shape
        H = self.n_heads
        q, k, v = self.qkv(x).split(D, dim=2)
        if last_only:
            q, mask = q[:, -1:], mask[:, :, -1:]
        q = q.view(B, q.size(1), H, D // H).transpose(1, 2)
        k, v = (t.view(B, L, H, D // H).transpose(1, 2) for t in (k, v))
        y = F.scaled_dot_product_attention(
            q, k, v, attn_mask=mask, dropout_p=self.dropout if self.training else 0.0
        )  # (B, H, Lq, D/H)
        return self.proj(y.transpose(1, 2).reshape(B, q.size(2), D))


class Block(nn.Module):
    def __init__(self, cfg: SASRecConfig) -> None:
        super().__init__()
        self.ln1 = nn.LayerNorm(cfg.dim)
        self.attn = CausalSelfAttention(cfg)
        self.ln2 = nn.LayerNorm(cfg.dim)
        self.ffn = nn.Sequential(
            nn.Linear(cfg.dim, cfg.dim), nn.GELU(), nn.Dropout(cfg.dropout), nn.Linear(cfg.dim, cfg.dim)
        )
        self.drop = nn.Dropout(cfg.dropout)

    def forward(self, x: torch.Tensor, mask: torch.Tensor, last_only: bool = False) -> torch.Tensor:
        """`last_only`: compute the output at the last position only, (B, 1, D); keys and values still
        come from every position. What serving needs from the final block, at a fraction of the cost."""
        y = self.attn(self.ln1(x), mask, last_only)
        x = (x[:, -1:] if last_only else x) + self.drop(y)
        return x + self.drop(self.ffn(self.ln2(x)))


def attention_mask(seqs: torch.Tensor) -> torch.Tensor:
    """(B, L) ids -> (B, 1, L, L) boolean "may attend" mask: causal, never to padding keys, and always to
    itself. The diagonal keeps fully padded query rows from being all-masked, which would make softmax
    return NaN (the pitfall in FIELD-NOTES: NaN scores then count as hits)."""
    B, L = seqs.shape
    causal = torch.ones(L, L, dtype=torch.bool, device=seqs.device).tril()
    keys = (seqs != PAD).unsqueeze(1)  # (B, 1, L)
    eye = torch.eye(L, dtype=torch.bool, device=seqs.device)
    return ((causal & keys) | eye).unsqueeze(1)


class SASRec(SequentialRecommender):
    def __init__(self, cfg: SASRecConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.n_items = cfg.n_items
        self.item_emb = nn.Embedding(cfg.n_items + 1, cfg.dim, padding_idx=PAD)
        self.pos_emb = nn.Embedding(cfg.max_len, cfg.dim)
        self.emb_drop = nn.Dropout(cfg.dropout)
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.n_layers))
        self.ln_f = nn.LayerNorm(cfg.dim)
        self.apply(self._init)

    def _init(self, m: nn.Module) -> None:
        # Small init: N(0, 1) embeddings times sqrt(d) start the CE loss near 40 instead of ln(N) ~ 7.4.
        if isinstance(m, nn.Linear | nn.Embedding):
            nn.init.normal_(m.weight, std=self.cfg.init_std)
            if isinstance(m, nn.Linear) and m.bias is not None:
                nn.init.zeros_(m.bias)
            if isinstance(m, nn.Embedding) and m.padding_idx is not None:
                with torch.no_grad():
                    m.weight[m.padding_idx].zero_()

    def item_table(self) -> torch.Tensor:
        return self.item_emb.weight

    def embed_items(self, seqs: torch.Tensor) -> torch.Tensor:
        """(B, L) -> (B, L, D) item part of the input; subclasses swap the item table here."""
        return self.item_emb(seqs)

    def hidden(self, seqs: torch.Tensor) -> torch.Tensor:
        """(B, L) left-padded ids -> (B, L, D) hidden states. Inputs longer than max_len keep the tail."""
        return self._run(seqs, last_only=False)

    def user_vector(self, seqs: torch.Tensor) -> torch.Tensor:
        """(B, L) -> (B, D): the hidden state at the last position (left padding: the newest item). The
        final block computes that position alone, which is what the served encoder runs per request."""
        return self._run(seqs, last_only=True)[:, -1]

    def _run(self, seqs: torch.Tensor, last_only: bool) -> torch.Tensor:
        seqs = seqs[:, -self.cfg.max_len :]
        L = seqs.size(1)
        pos = torch.arange(self.cfg.max_len - L, self.cfg.max_len, device=seqs.device)
        x = self.embed_items(seqs) * math.sqrt(self.cfg.dim) + self.pos_emb(pos)
        x = self.emb_drop(x) * (seqs != PAD).unsqueeze(-1)
        mask = attention_mask(seqs)
        for i, block in enumerate(self.blocks):
            x = block(x, mask, last_only=last_only and i == len(self.blocks) - 1)
        return self.ln_f(x)

    def loss(self, batch: Batch) -> torch.Tensor:
        h = self.hidden(batch.inputs)  # (B, L, D)
        valid = batch.targets != PAD
        h = h[valid]  # (N, D)
        targets = batch.targets[valid]
        table = self.item_table()
        if self.cfg.loss == "ce":
            logits = h @ table.T  # (N, n_items + 1)
            logits[:, PAD] = float("-inf")
            if batch.unseen is not None:
                logits[:, batch.unseen] = float("-inf")
            return F.cross_entropy(logits, targets)
        assert batch.negatives is not None, "BCE loss needs sampled negatives"
        neg = batch.negatives[valid]
        pos_logit = (h * table[targets]).sum(-1)
        neg_logit = (h * table[neg]).sum(-1)
        return F.binary_cross_entropy_with_logits(
            pos_logit, torch.ones_like(pos_logit)
        ) + F.binary_cross_entropy_with_logits(neg_logit, torch.zeros_like(neg_logit))
