"""A cold-start split's held-out items do not exist while the model trains: no loss term touches their rows."""

import numpy as np
import pytest
import torch

from training.config import TrainConfig
from training.data import ItemMeta, SequenceDataset
from training.data.split import cold_item_split
from training.models import build_model
from training.train import fit_model


def _dataset(seed: int = 0) -> SequenceDataset:
    rng = np.random.default_rng(seed)
    seqs = [rng.choice(np.arange(1, 31), size=int(rng.integers(6, 12)), replace=False) for _ in range(40)]
    return SequenceDataset(
        name="t",
        user_ids=[str(u) for u in range(40)],
        items=[ItemMeta(raw_id=str(i)) for i in range(1, 31)],
        sequences=seqs,
        timestamps=[np.arange(len(s)) for s in seqs],
    )


@pytest.mark.parametrize("kind,params", [
    ("sasrec", {"max_len": 10, "dim": 8, "n_layers": 1, "n_heads": 1, "loss": "ce"}),
    ("sasrec", {"max_len": 10, "dim": 8, "n_layers": 1, "n_heads": 1, "loss": "bce"}),
    ("gru4rec", {"max_len": 10, "dim": 8, "hidden": 8}),
])
def test_unseen_rows_keep_their_initial_values(kind: str, params: dict) -> None:
    split = cold_item_split(_dataset(), 0.2, seed=1)
    assert split.unseen_items is not None and len(split.unseen_items) == 6
    torch.manual_seed(0)
    model = build_model(kind, split.n_items, params)
    before = model.item_table().detach().clone()
    fit_model(model, split, TrainConfig(epochs=2, batch_size=16, patience=5, device="cpu"), seed=0)
    after = model.item_table().detach()
    unseen = torch.from_numpy(split.unseen_items)
    seen = torch.tensor([i for i in range(1, split.n_items + 1) if i not in set(split.unseen_items.tolist())])
    torch.testing.assert_close(after[unseen], before[unseen])
    assert not torch.allclose(after[seen], before[seen])  # the others did train


def test_weight_decay_would_move_unseen_rows_so_it_is_refused() -> None:
    split = cold_item_split(_dataset(), 0.2, seed=1)
    model = build_model("sasrec", split.n_items, {"max_len": 10, "dim": 8, "n_layers": 1, "n_heads": 1})
    with pytest.raises(ValueError, match="weight_decay"):
        fit_model(model, split, TrainConfig(epochs=1, weight_decay=0.01, device="cpu"), seed=0)
