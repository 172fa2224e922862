"""Tiny artifacts for the P2Rec tests: a randomly initialised 2-layer Llama saved with the REAL SmolLM2
tokenizer into a temp folder (so the folder-loading path runs), and a synthetic 30-user / 40-item dataset
whose titles carry a genre word the tiny LLM can latch on to."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tests.tiny_llm import build_tiny_llama
from training.data.split import leave_one_out
from training.data.types import ItemMeta, SequenceDataset, Split

GENRES = ["Space", "Romance", "Horror", "Cartoon"]
N_ITEMS, N_USERS, PER_GENRE = 40, 30, 10


@pytest.fixture(scope="session")
def tiny_llm_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_llama(tmp_path_factory.mktemp("tiny-llama"), hidden=32, tie_embeddings=True)


def _title(i: int) -> str:
    return f"{GENRES[(i - 1) // PER_GENRE]} story number {i}"


@pytest.fixture(scope="session")
def toy_dataset() -> SequenceDataset:
    """User u mostly watches genre u % 4 (80%), else random items; 8-14 events each."""
    rng = np.random.default_rng(0)
    items = [
        ItemMeta(raw_id=str(i), title=_title(i), categories=[GENRES[(i - 1) // PER_GENRE]])
        for i in range(1, N_ITEMS + 1)
    ]
    seqs, times = [], []
    for u in range(N_USERS):
        g = u % len(GENRES)
        n = int(rng.integers(8, 15))
        own = rng.permutation(np.arange(g * PER_GENRE + 1, (g + 1) * PER_GENRE + 1))
        other = rng.permutation(np.setdiff1d(np.arange(1, N_ITEMS + 1), own))
        n_own = min(len(own), int(round(0.8 * n)))
        seq = rng.permutation(np.concatenate([own[:n_own], other[: n - n_own]])).astype(np.int64)
        seqs.append(seq)
        times.append(np.arange(len(seq), dtype=np.int64))
    return SequenceDataset("toy", [str(u) for u in range(N_USERS)], items, seqs, times)


@pytest.fixture(scope="session")
def toy_split(toy_dataset: SequenceDataset) -> Split:
    return leave_one_out(toy_dataset)


@pytest.fixture(scope="session")
def teacher_emb() -> np.ndarray:
    """(N + 1, 8) table: a genre one-hot (scaled) plus small noise, row 0 zeros; k-means with K=4 finds the genres."""
    rng = np.random.default_rng(1)
    emb = np.zeros((N_ITEMS + 1, 8), dtype=np.float32)
    for i in range(1, N_ITEMS + 1):
        emb[i, (i - 1) // PER_GENRE] = 3.0
    emb[1:] += rng.normal(0, 0.1, size=(N_ITEMS, 8)).astype(np.float32)
    return emb
