"""Turning variable-length histories into left-padded tensors."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch

from training.data.types import PAD
from training.device import model_device
from training.models.base import SequentialRecommender


def left_pad(seqs: Sequence[np.ndarray], max_len: int) -> np.ndarray:
    """Keep each sequence's newest `max_len` items, right-aligned, zeros on the left: (B, max_len)."""
    out = np.full((len(seqs), max_len), PAD, dtype=np.int64)
    for i, s in enumerate(seqs):
        tail = s[-max_len:]
        if len(tail):
            out[i, max_len - len(tail) :] = tail
    return out


def training_windows(train: Sequence[np.ndarray], max_len: int, mode: str) -> tuple[np.ndarray, np.ndarray]:
    """Next-item training pairs: inputs (W, max_len) and targets (W, max_len), left-padded.

    "last" keeps each user's newest max_len+1 items (one window per user, the SASRec paper's setup);
    "sliding" cuts the whole sequence into newest-aligned windows of max_len+1 items that overlap by one
    item, so every training event is a target exactly once.
    """
    if mode not in ("last", "sliding"):
        raise ValueError(f"windows must be 'last' or 'sliding', not {mode!r}")
    windows: list[np.ndarray] = []
    for s in train:
        if len(s) < 2:
            continue
        end = len(s)
        while end >= 2:
            start = max(0, end - max_len - 1)
            windows.append(s[start:end])
            if mode == "last" or start == 0:
                break
            end = start + 1
    inputs = left_pad([w[:-1] for w in windows], max_len)
    targets = left_pad([w[1:] for w in windows], max_len)
    return inputs, targets


def make_score_fn(
    model: SequentialRecommender, max_len: int, batch_size: int = 512
) -> Callable[[list[np.ndarray]], np.ndarray]:
    """Adapter for the evaluation protocols: histories -> (B, n_items + 1) numpy scores, in eval mode."""

    def score(histories: list[np.ndarray]) -> np.ndarray:
        was_training = model.training
        device = model_device(model)
        model.eval()
        outs = []
        with torch.no_grad():
            for i in range(0, len(histories), batch_size):
                x = torch.from_numpy(left_pad(histories[i : i + batch_size], max_len)).to(device)
                outs.append(model.score_all(x).float().cpu().numpy())
        model.train(was_training)
        return np.concatenate(outs) if outs else np.zeros((0, model.n_items + 1), dtype=np.float32)

    return score
