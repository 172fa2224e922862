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

    def forward(
        self, x: torch.Tensor, mask: torch.Tensor, last_only: bool = False, qkv: torch.Tensor | None = None
    ) -> torch.Tensor:
        """(B, L, D) -> (B, L, D), or (B, 1, D) for the last query position alone (`last_only`: no keys or
        values are projected, `_last_query`). `qkv`: this layer's (B, L, 3D) projections of `x`, when the
        caller already has them (`FirstBlockTable`); `x` is then not read."""
        if qkv is not None:
            q, k, v = qkv.split(qkv.size(-1) // 3, dim=2)
            if last_only:
                q = q[:, -1:]
        elif last_only:
            return self._last_query(x, mask[:, 0, -1])
        else:
            q, k, v = self.qkv(x).split(x.size(-1), dim=2)
        B, L, D = k.shape
        H = self.n_heads
        if last_only:
            mask = mask[:, :, -1:]
        q = q.view(B, q.size(1), H, D // H).transpose(1, 2)
        k, v = (t.view(B, L, H, D // H).transpose(1, 2) for t in (k, v))
        y = F.scaled_dot_product_attention(
            q, k, v, attn_mask=mask, dropout_p=self.dropout if self.training else 0.0
        )  # (B, H, Lq, D/H)
        return self.proj(y.transpose(1, 2).reshape(B, q.size(2), D))

    def _last_query(self, x: torch.Tensor, keys: torch.Tensor) -> torch.Tensor:
        """(B, L, D), `keys` (B, L) the last query's allowed keys -> (B, 1, D): attention for the last position
        alone, without projecting a key or a value anywhere. Per head, the query scores key `j` as
        `q . (W_k x_j + b_k) = (W_k^T q) . x_j + q . b_k`; the second term is the same for every key, so
        softmax drops it. The values' weighted sum is `W_v (sum_j a_j x_j) + b_v`, the weights summing to one.
        So per row: one (D x D) product per head for the keys and one for the values, instead of the (L x D)
        x (D x 2D) projection of every position. The same answer as the full path to float rounding
        (tests/training/models/test_models.py); what the served encoder runs in the final block."""
        B, L, D = x.shape
        H = self.n_heads
        dh = D // H
        w_q, w_k, w_v = self.qkv.weight.split(D)
        q = F.linear(x[:, -1], w_q, self.qkv.bias[:D])  # (B, D)
        u = (q.view(B, H, dh, 1) * w_k.view(H, dh, D)).sum(2)  # (B, H, D): W_k^T q, per head
        scores = torch.bmm(u, x.transpose(1, 2)) * dh**-0.5  # (B, H, L)
        weights = scores.masked_fill(~keys.unsqueeze(1), float("-inf")).softmax(-1)
        weights = F.dropout(weights, self.dropout, self.training)
        mixed = torch.bmm(weights, x)  # (B, H, D): sum_j a_j x_j, per head
        y = (mixed.view(B, H, 1, D) * w_v.view(H, dh, D)).sum(-1) + self.qkv.bias[2 * D :].view(H, dh)  # (B, H, dh)
        return self.proj(y.reshape(B, 1, D))


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

    def forward(
        self, x: torch.Tensor, mask: torch.Tensor, last_only: bool = False, qkv: torch.Tensor | None = None
    ) -> torch.Tensor:
        """`last_only`: compute the output at the last position only, (B, 1, D); it still attends to every
        position. What serving needs from the final block, at a fraction of the cost.
        `qkv`: the attention's projections of `ln1(x)`, already known (`FirstBlockTable`)."""
        y = self.attn(x if qkv is not None else self.ln1(x), mask, last_only, qkv)
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

    def user_vector(self, seqs: torch.Tensor, table: FirstBlockTable | None = None) -> torch.Tensor:
        """(B, L) -> (B, D): the hidden state at the last position (left padding: the newest item). The
        final block computes that position alone, which is what the served encoder runs per request;
        `table` (eval only) replaces the first block's input projections by a look-up."""
        return self._run(seqs, last_only=True, table=table)[:, -1]

    def _run(self, seqs: torch.Tensor, last_only: bool, table: FirstBlockTable | None = None) -> torch.Tensor:
        seqs = seqs[:, -self.cfg.max_len :]
        L = seqs.size(1)
        pos = torch.arange(self.cfg.max_len - L, self.cfg.max_len, device=seqs.device)
        keep = (seqs != PAD).unsqueeze(-1)
        qkv = None
        if table is None:
            x = self.embed_items(seqs) * math.sqrt(self.cfg.dim) + self.pos_emb(pos)
            x = self.emb_drop(x) * keep
        else:
            assert not self.training, "the first-block table holds eval-mode values (no dropout)"
            x = (F.embedding(seqs, table.items) + self.pos_emb(pos)) * keep
            qkv = table.qkv(seqs, pos, keep)  # (B, L, 3D)
        mask = attention_mask(seqs)
        for i, block in enumerate(self.blocks):
            x = block(x, mask, last_only=last_only and i == len(self.blocks) - 1, qkv=qkv if i == 0 else None)
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


class FirstBlockTable(nn.Module):
    """The first block's layer norm and attention projections, `qkv(ln1(x))`, from per-item and
    per-position tables: no (B, L, D) x (D, 3D) matmul per request.

    The first block's input at a position is `x = a + p` (the item's embedding times sqrt(d), the position's
    embedding; zero for padding), and everything before its attention works on one position at a time.
    Layer norm centres `x`, which is linear: `x - mean(x) = a~ + p~` (each centred). So with `g` the norm's
    gain folded into the projection `W`,

        qkv = W g (a~ + p~) / s + (W beta + bias),    s^2 = (|a~|^2 + 2 a~.p~ + |p~|^2) / d + eps,

    where `W g a~` is a row per item, `W g p~` a row per position, and `a~.p~` one number per (item,
    position) pair: (n_items + 1) * (3d + max_len + d + 1) floats in all (ML-100K: 1.6 MiB), read per
    request instead of computed. The same values as the block's own (to float rounding; export checks every
    pair, training/export.py). `items` is the item part of `x` (the residual stream), so the item embedding
    (an adapter network, for the P2Rec variants) is not rerun either. Eval mode only (no dropout)."""

    def __init__(self, model: SASRec) -> None:
        super().__init__()
        if model.training:  # dropout in an adapter would be baked into `items`
            raise ValueError("build the first-block table from a model in eval mode")
        cfg = model.cfg
        block = model.blocks[0]
        ln, lin = block.ln1, block.attn.qkv
        with torch.no_grad():
            ids = torch.arange(cfg.n_items + 1).unsqueeze(1)  # (N + 1, 1)
            items = model.embed_items(ids)[:, 0] * math.sqrt(cfg.dim)  # (N + 1, D)
            items[PAD] = 0.0
            a = items - items.mean(-1, keepdim=True)
            p = model.pos_emb.weight - model.pos_emb.weight.mean(-1, keepdim=True)  # (max_len, D)
            w = lin.weight * ln.weight  # (3D, D): the gain folded in
            self.register_buffer("items", items.contiguous())
            self.register_buffer("item_proj", (a @ w.T).contiguous())  # (N + 1, 3D)
            self.register_buffer("pos_proj", (p @ w.T).contiguous())  # (max_len, 3D)
            self.register_buffer("cross", (a @ p.T).reshape(-1).contiguous())  # row item * max_len + pos
            self.register_buffer("item_sq", (a * a).sum(-1))  # (N + 1,)
            self.register_buffer("pos_sq", (p * p).sum(-1))  # (max_len,)
            self.register_buffer("bias", (lin.weight @ ln.bias + lin.bias).contiguous())  # qkv of a zero input
        self.max_len, self.dim, self.eps = cfg.max_len, cfg.dim, ln.eps

    def qkv(self, seqs: torch.Tensor, pos: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
        """(B, L) ids at positions `pos` (L,), `keep` (B, L, 1) the non-padding ones -> (B, L, 3D)."""
        cross = F.embedding(seqs * self.max_len + pos, self.cross.unsqueeze(1)).squeeze(-1)  # (B, L)
        sq = (F.embedding(seqs, self.item_sq.unsqueeze(1)).squeeze(-1) + 2 * cross + self.pos_sq[pos]) / self.dim
        scale = torch.rsqrt(sq.unsqueeze(-1) * keep + self.eps) * keep  # (B, L, 1); 0 for padding
        return (F.embedding(seqs, self.item_proj) + self.pos_proj[pos]) * scale + self.bias

    def max_error(self, model: SASRec, chunk: int = 1024) -> float:
        """The largest absolute difference from the first block's own `qkv(ln1(x))`, over every (item,
        position) pair, padding included (`chunk` items at a time)."""
        cfg, block = model.cfg, model.blocks[0]
        pos = torch.arange(cfg.max_len)
        worst = 0.0
        with torch.no_grad():
            for start in range(0, cfg.n_items + 1, chunk):
                ids = torch.arange(start, min(start + chunk, cfg.n_items + 1)).unsqueeze(1).expand(-1, cfg.max_len)
                keep = (ids != PAD).unsqueeze(-1)
                x = (self.items[ids] + model.pos_emb(pos)) * keep
                ref = block.attn.qkv(block.ln1(x))
                worst = max(worst, (self.qkv(ids, pos, keep) - ref).abs().max().item())
        return worst

    @staticmethod
    def nbytes(cfg: SASRecConfig) -> int:
        """The tables' size in float32 bytes, before building them."""
        n = cfg.n_items + 1
        return 4 * (n * (4 * cfg.dim + cfg.max_len + 1) + cfg.max_len * (3 * cfg.dim + 1) + 3 * cfg.dim)
