"""The bundle's soft prompt: a (n_tokens, hidden) float array (`.npy`) of vectors that go in front of a
prompt's token embeddings (DELRec's distilled recommendation-pattern prompts)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch


def load_soft_prompt(path: Path, hidden: int) -> torch.Tensor:
    """(n_tokens, hidden) float32; a clear error for anything else (vLLM does not check prompt embeddings
    in process, and a wrong shape there kills the engine for every later request)."""
    array = np.load(path, allow_pickle=False)
    if array.ndim != 2 or array.shape[1] != hidden or array.shape[0] < 1:
        raise ValueError(f"soft prompt {path}: expected shape (n_tokens, {hidden}), got {array.shape}")
    if not np.issubdtype(array.dtype, np.floating) or not np.isfinite(array).all():
        raise ValueError(f"soft prompt {path}: expected finite floats, got dtype {array.dtype}")
    return torch.from_numpy(array.astype(np.float32))
