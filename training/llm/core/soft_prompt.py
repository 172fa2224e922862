"""Soft prompts: N trainable vectors prepended to a prompt's token embeddings (prompt tuning, Lester et al.
2021; DELRec arXiv 2406.11156 §3.2 distils the SR teacher's behaviour into them with the LLM frozen).

Saved as a plain (N, hidden) float32 `.npy`: the bundle carries that file, and the service prepends it to
the token embeddings (transformers: `inputs_embeds`; vLLM: `prompt_embeds`).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn


class SoftPrompt(nn.Module):
    def __init__(self, vectors: torch.Tensor) -> None:
        super().__init__()
        self.vectors = nn.Parameter(vectors.detach().clone().float())  # (N, H)

    @classmethod
    def from_vocabulary(cls, embeddings: torch.Tensor, n_tokens: int, seed: int) -> SoftPrompt:
        """Start from the embeddings of N random vocabulary tokens: vectors at the scale the LLM expects
        (Lester et al. 2021 found this better than uniform random starts)."""
        gen = torch.Generator().manual_seed(seed)
        rows = torch.randint(0, embeddings.shape[0], (n_tokens,), generator=gen)
        return cls(embeddings.detach().float().cpu()[rows])

    @property
    def n_tokens(self) -> int:
        return int(self.vectors.shape[0])

    def forward(self, embeds: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, T, H) token embeddings, (B, T) mask -> (B, N + T, H), (B, N + T) with the vectors in front."""
        b = embeds.shape[0]
        soft = self.vectors.to(embeds.dtype).unsqueeze(0).expand(b, -1, -1)
        ones = torch.ones((b, self.n_tokens), dtype=mask.dtype, device=mask.device)
        return torch.cat([soft, embeds], dim=1), torch.cat([ones, mask], dim=1)

    def save(self, path: Path) -> Path:
        np.save(path, self.vectors.detach().float().cpu().numpy())
        return path

    @classmethod
    def load(cls, path: Path) -> SoftPrompt:
        return cls(torch.from_numpy(np.load(path, allow_pickle=False)))
