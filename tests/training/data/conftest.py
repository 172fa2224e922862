"""Fixtures of the data-layer tests: the shared datasets (read in place, never copied) and file builders."""

from __future__ import annotations

import gzip
import json
from pathlib import Path
from typing import Any

import pytest

from training.data import Interaction, ItemMeta, RawDataset

# <repo>/../shared/data, where the read-only shared copies live (MovieLens may not be redistributed).
SHARED = Path(__file__).resolve().parents[3].parent / "shared" / "data"


def shared_folder(name: str) -> Path:
    folder = SHARED / name
    if not folder.is_dir():
        pytest.skip(f"shared dataset {folder} not available")
    return folder


def write_gz_lines(path: Path, lines: list[str | dict[str, Any]]) -> Path:
    with gzip.open(path, "wt", encoding="utf-8") as f:
        for line in lines:
            f.write((json.dumps(line) if isinstance(line, dict) else line) + "\n")
    return path


def raw_dataset(
    rows: list[tuple[str, str, int]], *, rating: float | None = None, name: str = "t"
) -> RawDataset:
    """RawDataset from (user, item, timestamp) rows in file order; every item gets metadata."""
    events = [Interaction(user=u, item=i, timestamp=t, rating=rating) for u, i, t in rows]
    items = {i: ItemMeta(raw_id=i, title=f"title {i}") for _, i, _ in rows}
    return RawDataset(name=name, interactions=events, items=items)


@pytest.fixture(scope="session")
def ml100k_raw() -> RawDataset:
    """The shared ML-100K, read once per test session (readers return fresh objects; do not mutate it)."""
    from training.data import read_dataset

    return read_dataset("ml-100k", shared_folder("ml-100k"))
