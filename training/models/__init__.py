"""Sequential recommenders behind one interface (`SequentialRecommender`) and a small builder."""

from __future__ import annotations

from typing import Any

import torch

from training.models.base import Batch, SequentialRecommender
from training.models.gru4rec import GRU4Rec, GRU4RecConfig
from training.models.popularity import Popularity
from training.models.sasrec import SASRec, SASRecConfig
from training.models.sasrec_aug import SASRecAdapter, SASRecAdapterConfig, SASRecInit, SASRecInitConfig

AUG_MODEL_NAMES = ("sasrec_adapter", "sasrec_init")  # need P2Rec's augmented item table
MODEL_NAMES = ("popularity", "gru4rec", "sasrec", *AUG_MODEL_NAMES)


def build_model(
    name: str, n_items: int, params: dict[str, Any] | None = None, aug: torch.Tensor | None = None
) -> SequentialRecommender:
    """Build a model by name; `params` are its config fields (from the preset YAML).

    `aug` is the (n_items + 1, d_aug) augmented item table (P2Rec stage b, row 0 = padding) that
    "sasrec_adapter" and "sasrec_init" are built on; the other models take none."""
    params = dict(params or {})
    if name in AUG_MODEL_NAMES:
        if aug is None:
            raise ValueError(
                f"model {name!r} needs the augmented item table `aug`, a (n_items + 1, d) tensor from "
                "P2Rec stage (b): train it with `python -m training p2rec`"
            )
        if name == "sasrec_adapter":
            return SASRecAdapter(SASRecAdapterConfig(n_items=n_items, **params), aug)
        return SASRecInit(SASRecInitConfig(n_items=n_items, **params), aug)
    if aug is not None:
        raise ValueError(f"model {name!r} takes no augmented table; only {AUG_MODEL_NAMES} do")
    if name == "popularity":
        return Popularity(n_items)
    if name == "sasrec":
        return SASRec(SASRecConfig(n_items=n_items, **params))
    if name == "gru4rec":
        return GRU4Rec(GRU4RecConfig(n_items=n_items, **params))
    raise ValueError(f"unknown model {name!r}; choose one of {MODEL_NAMES}")


__all__ = [
    "AUG_MODEL_NAMES",
    "MODEL_NAMES",
    "Batch",
    "GRU4Rec",
    "GRU4RecConfig",
    "Popularity",
    "SASRec",
    "SASRecAdapter",
    "SASRecAdapterConfig",
    "SASRecConfig",
    "SASRecInit",
    "SASRecInitConfig",
    "SequentialRecommender",
    "build_model",
]
