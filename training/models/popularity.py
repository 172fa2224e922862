"""Most-popular baseline: every user gets the items ranked by their training interaction count."""

from __future__ import annotations

import numpy as np
import torch

from training.models.base import Batch, SequentialRecommender


class Popularity(SequentialRecommender):
    def __init__(self, n_items: int) -> None:
        super().__init__()
        self.n_items = n_items
        self.register_buffer("counts", torch.zeros(n_items + 1))

    def fit(self, train: list[np.ndarray]) -> None:
        counts = np.bincount(np.concatenate(train), minlength=self.n_items + 1).astype(np.float32)
        counts[0] = 0.0
        self.counts.copy_(torch.from_numpy(counts))

    def loss(self, batch: Batch) -> torch.Tensor:
        raise TypeError("Popularity is fitted by counting, not by gradient descent")

    def score_all(self, seqs: torch.Tensor) -> torch.Tensor:
        return self.counts.unsqueeze(0).expand(seqs.size(0), -1)

    @property
    def trainable(self) -> bool:
        return False

    @property
    def max_len(self) -> int:
        return 1  # ignores the history
