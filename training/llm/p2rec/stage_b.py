"""P2Rec stage (b), information augmentation: each item alone through the tuned LLM as a one-item
"virtual user"; its pooled decoder state, reduced by PCA, is the item's augmented embedding for the SR model.

The embedding depends only on the item's text (or its id string in id-only mode), so an item without a
single training interaction still gets one: cold start is the same call with a longer list of items.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from training.device import model_device
from training.llm.core.model import encode, length_batches, pad_batch
from training.llm.core.prompts import PromptConfig, virtual_user_ids

log = logging.getLogger(__name__)


@dataclass
class PCA:
    mean: np.ndarray  # (H,)
    components: np.ndarray  # (dim, H), rows = principal directions
    explained_variance_ratio: np.ndarray  # (dim,)

    def transform(self, x: np.ndarray) -> np.ndarray:
        return ((np.asarray(x, dtype=np.float64) - self.mean) @ self.components.T).astype(np.float32)

    def save(self, path: Path) -> None:
        np.savez(path, mean=self.mean, components=self.components, evr=self.explained_variance_ratio)

    @classmethod
    def load(cls, path: Path) -> PCA:
        z = np.load(path)
        return cls(z["mean"], z["components"], z["evr"])


def fit_pca(x: np.ndarray, dim: int) -> PCA:
    """Centred PCA by SVD (numpy); `dim` is capped at min(n, H)."""
    x = np.asarray(x, dtype=np.float64)
    mean = x.mean(axis=0)
    _, s, vt = np.linalg.svd(x - mean, full_matrices=False)
    dim = min(dim, vt.shape[0])
    var = s**2
    return PCA(mean, vt[:dim], var[:dim] / max(var.sum(), 1e-12))


@torch.inference_mode()
def encode_texts(
    model: Any,
    tokenizer: Any,
    texts: Sequence[str],
    prompt_cfg: PromptConfig,
    pooling: str,
    batch_size: int = 32,
) -> np.ndarray:
    """(len(texts), H) float32 pooled states, each text rendered as a one-item virtual user."""
    model.eval()
    prompts = [virtual_user_ids(t, prompt_cfg, tokenizer) for t in texts]
    device = model_device(model)
    out: np.ndarray | None = None
    batches = list(length_batches([len(p) for p in prompts], batch_size, None))
    for idx in tqdm(batches, desc="stage-b items", leave=False, dynamic_ncols=True):
        ids, mask = pad_batch([prompts[i] for i in idx], tokenizer.pad_token_id, device)
        h = encode(model, ids, mask, pooling).cpu().numpy()
        if out is None:
            out = np.zeros((len(texts), h.shape[1]), dtype=np.float32)
        out[idx] = h
    return out if out is not None else np.zeros((0, 0), dtype=np.float32)


def augmented_table(raw: np.ndarray, dim: int) -> tuple[np.ndarray, PCA]:
    """(N + 1, H) raw states (row 0 = padding) -> ((N + 1, dim) float32 with row 0 zero, PCA on rows 1..N)."""
    pca = fit_pca(raw[1:], dim)
    out = np.zeros((raw.shape[0], pca.components.shape[0]), dtype=np.float32)
    out[1:] = pca.transform(raw[1:])
    return out, pca


def item_embeddings(
    model: Any,
    tokenizer: Any,
    texts: Sequence[str],
    prompt_cfg: PromptConfig,
    pooling: str,
    dim: int,
    batch_size: int = 32,
) -> tuple[np.ndarray, np.ndarray, PCA]:
    """Stage (b) end to end. `texts[i]` describes dense item i (texts[0] = padding, ignored; any items,
    trained on or not). Returns (raw (N + 1, H), reduced (N + 1, dim), PCA), row 0 zero in both."""
    states = encode_texts(model, tokenizer, list(texts[1:]), prompt_cfg, pooling, batch_size)
    raw = np.zeros((len(texts), states.shape[1]), dtype=np.float32)
    raw[1:] = states
    reduced, pca = augmented_table(raw, dim)
    log.info(
        "stage-b: %d items, H=%d -> %d dims (%.1f%% variance kept)",
        len(texts) - 1,
        raw.shape[1],
        reduced.shape[1],
        100 * float(pca.explained_variance_ratio.sum()),
    )
    return raw, reduced, pca
