"""The bundle's soft prompt: a (n_tokens, hidden) float array (`.npy`) of vectors that go in front of a
prompt's token embeddings (DELRec's distilled recommendation-pattern prompts)."""

from __future__ import annotations

import json
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


def embedding_table(model_dir: Path) -> torch.Tensor:
    """The input embedding matrix from a local safetensors model folder (sharded or not): prompt embeddings
    for an engine (in process or remote) are built from it."""
    from safetensors import safe_open

    key = "model.embed_tokens.weight"
    index = model_dir / "model.safetensors.index.json"
    name = json.loads(index.read_text())["weight_map"][key] if index.is_file() else "model.safetensors"
    with safe_open(str(model_dir / name), framework="pt") as f:
        return f.get_tensor(key)


def soft_prompt_and_table(model: str, soft_prompt: Path) -> tuple[torch.Tensor, torch.Tensor]:
    """(the checked soft prompt, the model's input embedding table): prompt embeddings are built here."""
    model_dir = Path(model).expanduser()
    if not model_dir.is_dir():
        raise ValueError(f"soft prompts need a local model folder to embed tokens, not {model!r}")
    table = embedding_table(model_dir)
    return load_soft_prompt(soft_prompt, table.shape[1]), table
