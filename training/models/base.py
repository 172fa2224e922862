"""The one small interface every sequential recommender answers (after RecBole's SequentialRecommender).

Histories are left-padded LongTensors (B, L) with 0 = padding; scores cover every item id (column 0 is the
padding id and is never ranked by the evaluation).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from training.data.types import PAD


@dataclass
class Batch:
    """One training batch of next-item prediction: `targets[b, t]` is the item after `inputs[b, :t+1]`.

    `negatives` (same shape) are sampled items for BCE-style losses; None when the loss needs none.
    `unseen` marks items that do not exist yet when the model trains (a cold-start split): a full-softmax
    loss leaves them out, so their rows get no gradient, as a real new item's would not.
    """

    inputs: torch.Tensor  # (B, L) int64, left-padded
    targets: torch.Tensor  # (B, L) int64, 0 where there is no target
    negatives: torch.Tensor | None = None  # (B, L) int64
    unseen: torch.Tensor | None = None  # (n_items + 1,) bool


class SequentialRecommender(nn.Module):
    """Tensors in, tensors out; no I/O, no stored device (STYLE rule 4)."""

    n_items: int

    def loss(self, batch: Batch) -> torch.Tensor:
        raise NotImplementedError

    def user_vector(self, seqs: torch.Tensor) -> torch.Tensor:
        """(B, L) histories -> (B, D) vectors whose inner product with `item_table()` is the score."""
        raise NotImplementedError

    def item_table(self) -> torch.Tensor:
        """(n_items + 1, D) item embeddings used for scoring; row 0 = padding."""
        raise NotImplementedError

    def score_all(self, seqs: torch.Tensor) -> torch.Tensor:
        """(B, L) histories -> (B, n_items + 1) scores."""
        return self.user_vector(seqs) @ self.item_table().T

    @property
    def trainable(self) -> bool:
        return True

    @property
    def max_len(self) -> int:
        """Longest history the model reads (older items are cut); from its config."""
        return int(self.cfg.max_len)  # type: ignore[attr-defined]


def last_nonpad_index(seqs: torch.Tensor) -> torch.Tensor:
    """Index of the last real position per row of a left- or right-padded batch; 0 for empty rows."""
    L = seqs.size(1)
    pos = torch.arange(L, device=seqs.device).expand_as(seqs)
    return torch.where(seqs != PAD, pos, torch.zeros_like(pos)).max(dim=1).values
