import math
from pathlib import Path

import pytest
import torch

from training.models.base import Batch
from training.models.sasrec import FirstBlockTable
from training.models.sasrec_aug import SASRecAdapter, SASRecAdapterConfig, SASRecInit, SASRecInitConfig

N_ITEMS, D_AUG, DIM = 30, 12, 16


def _aug() -> torch.Tensor:
    torch.manual_seed(1)
    aug = torch.randn(N_ITEMS + 1, D_AUG) * 5.0  # LLM states are large; the models rescale them
    aug[0] = 0
    return aug


def _adapter(**kw: object) -> SASRecAdapter:
    torch.manual_seed(0)
    cfg = SASRecAdapterConfig(n_items=N_ITEMS, max_len=8, dim=DIM, n_layers=2, n_heads=2, dropout=0.0, **kw)
    return SASRecAdapter(cfg, _aug())


def _batch() -> Batch:
    inputs = torch.tensor([[0, 0, 1, 2, 3, 4, 5, 6], [0, 0, 0, 0, 7, 8, 9, 10]])
    targets = torch.tensor([[0, 0, 2, 3, 4, 5, 6, 7], [0, 0, 0, 0, 8, 9, 10, 11]])
    return Batch(inputs, targets, torch.randint(1, N_ITEMS + 1, targets.shape))


@pytest.mark.parametrize("kw", [{}, {"adapter": "mlp", "adapter_hidden": 16}, {"id_embedding": True}])
def test_adapter_forward_backward_keeps_the_table_frozen(kw: dict[str, object]) -> None:
    m = _adapter(**kw).train()
    assert "aug" in dict(m.named_buffers()) and "aug" not in dict(m.named_parameters())
    assert hasattr(m, "item_emb") == bool(kw.get("id_embedding"))
    table = m.item_table()
    assert table.shape == (N_ITEMS + 1, DIM) and not table[0].any()
    loss = m.loss(_batch())
    assert abs(loss.item() - math.log(N_ITEMS)) < 0.5, "adapter init should start near the uniform loss"
    before = m.aug.clone()
    loss.backward()
    grads = [p.grad for p in m.adapter.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    torch.testing.assert_close(m.aug, before)
    scores = m.eval().score_all(_batch().inputs)
    assert scores.shape == (2, N_ITEMS + 1) and torch.isfinite(scores).all()


def test_init_variant_starts_from_the_augmented_table() -> None:
    aug = torch.randn(N_ITEMS + 1, DIM) * 5.0
    aug[0] = 0
    m = SASRecInit(SASRecInitConfig(n_items=N_ITEMS, max_len=8, dim=DIM, dropout=0.0), aug)
    w = m.item_emb.weight
    assert not w[0].any() and w[1:].std().item() == pytest.approx(0.02, rel=1e-3)
    torch.testing.assert_close(
        w[1:] / w[1:].norm(dim=1, keepdim=True), aug[1:] / aug[1:].norm(dim=1, keepdim=True)
    )
    loss = m.train().loss(_batch())
    loss.backward()
    assert w.grad is not None and w.grad[1:].abs().sum() > 0  # trained, not frozen
    with pytest.raises(ValueError, match="aug_dim"):
        SASRecInit(SASRecInitConfig(n_items=N_ITEMS, dim=DIM), torch.zeros(N_ITEMS + 1, DIM + 1))
    with pytest.raises(ValueError, match="n_items"):
        SASRecAdapter(SASRecAdapterConfig(n_items=N_ITEMS, dim=DIM), torch.zeros(N_ITEMS, D_AUG))


class _Encoder(torch.nn.Module):
    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, seqs: torch.Tensor) -> torch.Tensor:
        return self.model.user_vector(seqs)


@pytest.mark.parametrize("variant", ["adapter", "mlp_id", "init"])
def test_user_vector_survives_torch_export(variant: str, tmp_path: Path) -> None:
    if variant == "init":
        m: torch.nn.Module = SASRecInit(
            SASRecInitConfig(n_items=N_ITEMS, max_len=8, dim=DIM), torch.randn(N_ITEMS + 1, DIM)
        )
    else:
        m = _adapter(
            **({"adapter": "mlp", "adapter_hidden": 16, "id_embedding": True} if variant == "mlp_id" else {})
        )
    m.eval()
    example = torch.zeros(2, 8, dtype=torch.long)
    example[:, -3:] = torch.tensor([1, 2, 3])
    batch = torch.export.Dim("batch", min=1, max=4096)
    program = torch.export.export(_Encoder(m).eval(), (example,), dynamic_shapes={"seqs": {0: batch}})
    torch.export.save(program, tmp_path / "enc.pt2")
    loaded = torch.export.load(tmp_path / "enc.pt2").module()
    seqs = torch.tensor([[0, 0, 0, 0, 0, 4, 5, 6], [1, 2, 3, 4, 5, 6, 7, 8], [0, 0, 0, 0, 0, 0, 0, 9]])
    with torch.no_grad():
        torch.testing.assert_close(loaded(seqs), m.user_vector(seqs))
        # the serving table (training/export.py) runs the adapter once per item, ahead of time
        torch.testing.assert_close(m.user_vector(seqs, FirstBlockTable(m)), m.user_vector(seqs), atol=1e-5, rtol=1e-4)
