import math

import numpy as np
import pytest
import torch

from training.models import Batch, GRU4Rec, GRU4RecConfig, Popularity, SASRec, SASRecConfig, build_model
from training.models.sasrec import FirstBlockTable

N_ITEMS = 30


def _sasrec(**kw: object) -> SASRec:
    torch.manual_seed(0)
    return SASRec(SASRecConfig(n_items=N_ITEMS, max_len=8, dim=16, n_layers=2, n_heads=2, dropout=0.0, **kw))


def test_sasrec_shapes_and_fully_padded_rows_are_finite() -> None:
    m = _sasrec().eval()
    seqs = torch.tensor([[0, 0, 0, 0, 0, 0, 0, 0], [0, 0, 0, 0, 0, 3, 4, 5], [1, 2, 3, 4, 5, 6, 7, 8]])
    scores = m.score_all(seqs)
    assert scores.shape == (3, N_ITEMS + 1)
    assert torch.isfinite(scores).all(), "an all-padding history must not produce NaN (FIELD-NOTES pitfall)"


@pytest.mark.parametrize(("n_layers", "n_heads"), [(1, 2), (2, 1), (2, 2), (2, 4), (3, 2)])
def test_sasrec_user_vector_computing_the_last_position_alone_matches_the_full_pass(n_layers: int, n_heads: int) -> None:
    torch.manual_seed(0)
    m = SASRec(SASRecConfig(n_items=N_ITEMS, max_len=8, dim=16, n_layers=n_layers, n_heads=n_heads)).eval()
    last = m.blocks[-1]
    with torch.no_grad():  # large biases: the key bias must cancel in softmax and the value bias must not
        for t in (last.attn.qkv.bias, last.ln1.bias, last.ln1.weight):
            t.copy_(3 * torch.randn_like(t))
    seqs = torch.tensor([[0, 0, 0, 0, 0, 0, 0, 0], [0, 0, 0, 0, 0, 3, 4, 5], [1, 2, 3, 4, 5, 6, 7, 8],
                         [0, 0, 7, 7, 7, 0, 2, 0]])  # fmt: skip
    with torch.no_grad():
        torch.testing.assert_close(m.user_vector(seqs), m.hidden(seqs)[:, -1], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("n_layers", [1, 2, 3])
def test_the_first_block_table_gives_the_user_vectors_the_model_computes(n_layers: int) -> None:
    torch.manual_seed(0)
    m = SASRec(SASRecConfig(n_items=N_ITEMS, max_len=8, dim=16, n_layers=n_layers, n_heads=2)).eval()
    block = m.blocks[0]
    with torch.no_grad():  # as after training: the norm's gain and bias and the projection's bias all count
        for t in (block.ln1.weight, block.ln1.bias, block.attn.qkv.bias, m.item_emb.weight, m.pos_emb.weight):
            t.copy_(torch.randn_like(t))
    table = FirstBlockTable(m)
    assert sum(b.numel() * 4 for b in table.buffers()) == FirstBlockTable.nbytes(m.cfg)
    assert table.max_error(m) < 1e-5  # every (item, position) pair, against the block's own layers
    assert table.max_error(m, chunk=7) == table.max_error(m)
    gen = torch.Generator().manual_seed(3)
    seqs = torch.randint(1, N_ITEMS + 1, (6, 8), generator=gen)
    seqs[0] = 0  # all padding
    seqs[1, :5] = 0
    seqs[2, :7] = 0
    with torch.no_grad():
        torch.testing.assert_close(m.user_vector(seqs, table), m.hidden(seqs)[:, -1], atol=1e-5, rtol=1e-4)
        short = seqs[:, 3:]  # a shorter window: absolute positions 3..7, as the model uses them
        torch.testing.assert_close(m.user_vector(short, table), m.user_vector(short), atol=1e-5, rtol=1e-4)
    m.train()
    with pytest.raises(AssertionError, match="eval-mode"):
        m.user_vector(seqs, table)
    with pytest.raises(ValueError, match="eval mode"):
        FirstBlockTable(m)


def test_sasrec_is_causal_and_ignores_padding() -> None:
    m = _sasrec().eval()
    a = torch.tensor([[0, 0, 0, 0, 1, 2, 3, 4]])
    b = torch.tensor([[0, 0, 0, 0, 1, 2, 3, 9]])
    ha, hb = m.hidden(a), m.hidden(b)
    # the future item (last position) must not change earlier positions
    torch.testing.assert_close(ha[:, :-1], hb[:, :-1])
    # the same history with a shorter padded window gives the same user vector
    short = torch.tensor([[0, 1, 2, 3, 4]])
    torch.testing.assert_close(m.user_vector(a), m.user_vector(short), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("loss", ["ce", "bce"])
def test_sasrec_initial_loss_is_sane_and_backprops(loss: str) -> None:
    m = _sasrec(loss=loss).train()
    inputs = torch.tensor([[0, 0, 1, 2, 3, 4, 5, 6], [0, 0, 0, 0, 7, 8, 9, 10]])
    targets = torch.tensor([[0, 0, 2, 3, 4, 5, 6, 7], [0, 0, 0, 0, 8, 9, 10, 11]])
    negatives = torch.randint(1, N_ITEMS + 1, targets.shape)
    value = m.loss(Batch(inputs, targets, negatives))
    expected = math.log(N_ITEMS) if loss == "ce" else 2 * math.log(2)
    assert abs(value.item() - expected) < 0.5, "small init should start near the uniform-prediction loss"
    value.backward()
    assert m.item_emb.weight.grad is not None and torch.isfinite(m.item_emb.weight.grad).all()


def test_gru4rec_shapes_and_loss() -> None:
    torch.manual_seed(0)
    m = GRU4Rec(GRU4RecConfig(n_items=N_ITEMS, max_len=8, dim=16, hidden=24))
    seqs = torch.tensor([[0, 0, 0, 1, 2, 3, 4, 5]])
    assert m.score_all(seqs).shape == (1, N_ITEMS + 1)
    loss = m.loss(Batch(seqs, torch.tensor([[0, 0, 0, 2, 3, 4, 5, 6]])))
    assert abs(loss.item() - math.log(N_ITEMS)) < 0.5


def test_popularity_ranks_by_training_counts() -> None:
    m = Popularity(5)
    m.fit([np.array([1, 2, 2]), np.array([2, 3])])
    scores = m.score_all(torch.zeros(2, 1, dtype=torch.long))
    assert scores.shape == (2, 6)
    assert scores[0].tolist() == [0.0, 1.0, 3.0, 1.0, 0.0, 0.0]
    assert not m.trainable


def test_build_model_rejects_unknown_names_and_params() -> None:
    with pytest.raises(ValueError, match="unknown model"):
        build_model("bert4rec", 10)
    with pytest.raises(TypeError):
        build_model("sasrec", 10, {"dimension": 3})


def test_build_model_needs_the_augmented_table_for_p2rec_models() -> None:
    aug = torch.randn(11, 8)
    aug[0] = 0
    for name in ("sasrec_adapter", "sasrec_init"):
        with pytest.raises(ValueError, match="augmented item table"):
            build_model(name, 10, {"dim": 8})
        model = build_model(name, 10, {"dim": 8, "max_len": 4}, aug)
        assert model.score_all(torch.tensor([[0, 1, 2, 3]])).shape == (1, 11)
    with pytest.raises(ValueError, match="takes no augmented table"):
        build_model("sasrec", 10, {}, aug)
