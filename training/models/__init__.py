"""Sequential recommenders behind one interface (`SequentialRecommender`) and a small builder."""

from __future__ import annotations

from typing import Any

from training.models.base import Batch, SequentialRecommender
from training.models.gru4rec import GRU4Rec, GRU4RecConfig
from training.models.popularity import Popularity
from training.models.sasrec import SASRec, SASRecConfig

MODEL_NAMES = ("popularity", "gru4rec", "sasrec")


def build_model(name: str, n_items: int, params: dict[str, Any] | None = None) -> SequentialRecommender:
    """Build a model by name; `params` are its config fields (from the preset YAML)."""
    params = dict(params or {})
    if name == "popularity":
        return Popularity(n_items)
    if name == "sasrec":
        return SASRec(SASRecConfig(n_items=n_items, **params))
    if name == "gru4rec":
        return GRU4Rec(GRU4RecConfig(n_items=n_items, **params))
    raise ValueError(f"unknown model {name!r}; choose one of {MODEL_NAMES}")


__all__ = [
    "MODEL_NAMES",
    "Batch",
    "GRU4Rec",
    "GRU4RecConfig",
    "Popularity",
    "SASRec",
    "SASRecConfig",
    "SequentialRecommender",
    "build_model",
]
