"""GRU4Rec (Hidasi et al., ICLR 2016) in the session-parallel-free form used by most SR benchmarks
(e.g. RecBole): a GRU over the item sequence, the last hidden state projected to the item space and scored
against the item embedding table, trained with full-softmax cross-entropy at every position."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from training.data.types import PAD
from training.models.base import Batch, SequentialRecommender


@dataclass
class GRU4RecConfig:
    n_items: int
    max_len: int = 50
    dim: int = 64
    hidden: int = 128
    n_layers: int = 1
    dropout: float = 0.2
    init_std: float = 0.02


class GRU4Rec(SequentialRecommender):
    def __init__(self, cfg: GRU4RecConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.n_items = cfg.n_items
        self.item_emb = nn.Embedding(cfg.n_items + 1, cfg.dim, padding_idx=PAD)
        self.drop = nn.Dropout(cfg.dropout)
        self.gru = nn.GRU(cfg.dim, cfg.hidden, num_layers=cfg.n_layers, batch_first=True)
        self.proj = nn.Linear(cfg.hidden, cfg.dim)
        nn.init.normal_(self.item_emb.weight, std=cfg.init_std)
        with torch.no_grad():
            self.item_emb.weight[PAD].zero_()

    def item_table(self) -> torch.Tensor:
        return self.item_emb.weight

    def hidden(self, seqs: torch.Tensor) -> torch.Tensor:
        """(B, L) left-padded ids -> (B, L, D). Leading pads embed to zeros, so the GRU state entering
        the first real item is the same for every user (no packing needed with left padding)."""
        seqs = seqs[:, -self.cfg.max_len :]
        x = self.drop(self.item_emb(seqs))
        out, _ = self.gru(x)  # (B, L, H)
        return self.proj(self.drop(out))

    def user_vector(self, seqs: torch.Tensor) -> torch.Tensor:
        return self.hidden(seqs)[:, -1]

    def loss(self, batch: Batch) -> torch.Tensor:
        h = self.hidden(batch.inputs)
        valid = batch.targets != PAD
        logits = h[valid] @ self.item_table().T
        logits[:, PAD] = float("-inf")
        if batch.unseen is not None:
            logits[:, batch.unseen] = float("-inf")
        return F.cross_entropy(logits, batch.targets[valid])
