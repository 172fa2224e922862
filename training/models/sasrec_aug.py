"""SASRec on LLM-augmented item embeddings (the SR side of TSLRec/P2Rec, arXiv 2406.00333).

Two ways to use a fixed (n_items + 1, d_aug) augmented table (row 0 = padding):

- `SASRecAdapter`: the table stays FROZEN (a buffer) and a small trainable adapter maps it to the model's
  dim, as in LLMEmb (Liu et al. 2024, "Large Language Model Empowered Embedding Generator for Sequential
  Recommendation"); optionally a trainable id embedding is added (off by default). Scoring and retrieval use
  the adapted table, so an item the SR model never saw in training still has a usable row.
- `SASRecInit`: a plain SASRec whose item embedding starts from the augmented table (rescaled to SASRec's
  init std) and is then trained like any other parameter.

Both take the table as a constructor tensor and do no file I/O (STYLE rule 4).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn

from training.data.types import PAD
from training.models.sasrec import SASRec, SASRecConfig


@dataclass
class SASRecAdapterConfig(SASRecConfig):
    adapter: Literal["linear", "mlp"] = "linear"
    adapter_hidden: int = 128  # "mlp" only
    adapter_dropout: float = 0.0  # "mlp" only
    id_embedding: bool = False  # add a trainable id embedding to the adapted text embedding
    normalize: bool = True  # divide the table by its global std so the adapter sees unit-scale inputs


@dataclass
class SASRecInitConfig(SASRecConfig):
    init_scale: float | None = None  # std of the initial item rows; None = init_std, as plain SASRec


def _check_table(aug: torch.Tensor, n_items: int) -> torch.Tensor:
    if aug.dim() != 2 or aug.shape[0] != n_items + 1:
        raise ValueError(
            f"augmented table must be (n_items + 1, d) = ({n_items + 1}, d), got {tuple(aug.shape)}"
        )
    return aug.detach().float().clone()


def _row_std(aug: torch.Tensor) -> torch.Tensor:
    return aug[1:].std().clamp_min(1e-8)


class SASRecAdapter(SASRec):
    def __init__(self, cfg: SASRecAdapterConfig, aug: torch.Tensor) -> None:
        super().__init__(cfg)
        self.cfg: SASRecAdapterConfig = cfg
        table = _check_table(aug, cfg.n_items)
        if cfg.normalize:
            table = table / _row_std(table)
        table[PAD] = 0.0
        self.register_buffer("aug", table)  # (n_items + 1, d_aug), frozen: not a parameter
        d_aug = table.shape[1]
        if cfg.adapter == "linear":
            self.adapter: nn.Module = nn.Linear(d_aug, cfg.dim)
        elif cfg.adapter == "mlp":
            self.adapter = nn.Sequential(
                nn.Linear(d_aug, cfg.adapter_hidden),
                nn.GELU(),
                nn.Dropout(cfg.adapter_dropout),
                nn.Linear(cfg.adapter_hidden, cfg.dim),
            )
        else:
            raise ValueError(f"adapter must be 'linear' or 'mlp', not {cfg.adapter!r}")
        linears = [m for m in self.adapter.modules() if isinstance(m, nn.Linear)]
        for i, m in enumerate(linears):
            # Output rows start at ~init_std like SASRec's own embedding rows (given unit-scale inputs), so
            # the initial loss is near ln(N) (FIELD-NOTES: large item rows start the CE loss far off);
            # hidden layers keep unit scale.
            last = i == len(linears) - 1
            nn.init.normal_(m.weight, std=(cfg.init_std if last else 1.0) / m.in_features**0.5)
            nn.init.zeros_(m.bias)
        if not cfg.id_embedding:
            del self.item_emb  # the id table would be dead weight in the optimizer and the export

    def item_table(self) -> torch.Tensor:
        table = self.adapter(self.aug[1:])  # (n_items, D)
        if self.cfg.id_embedding:
            table = table + self.item_emb.weight[1:]
        return torch.cat([table.new_zeros(1, table.shape[1]), table])  # row 0 stays the zero padding row

    def embed_items(self, seqs: torch.Tensor) -> torch.Tensor:
        x = self.adapter(self.aug[seqs])  # (B, L, D): adapt only the rows in the batch
        if self.cfg.id_embedding:
            x = x + self.item_emb(seqs)
        return x * (seqs != PAD).unsqueeze(-1)


class SASRecInit(SASRec):
    def __init__(self, cfg: SASRecInitConfig, aug: torch.Tensor) -> None:
        super().__init__(cfg)
        table = _check_table(aug, cfg.n_items)
        if table.shape[1] != cfg.dim:
            raise ValueError(f"augmented dim {table.shape[1]} != SASRec dim {cfg.dim}: set aug_dim = dim")
        scale = cfg.init_scale if cfg.init_scale is not None else cfg.init_std
        with torch.no_grad():
            self.item_emb.weight.copy_(table / _row_std(table) * scale)
            self.item_emb.weight[PAD].zero_()
