"""The traced encoder: a batch runs as the cheapest cover of its rows by the traced bucket sizes, and answers
exactly what the program answers, row for row, at every batch size."""

from __future__ import annotations

import pytest
import torch

from service.index.fast_encoder import BucketedEncoder, cheapest_covers


class MeanPool(torch.nn.Module):
    """(B, L) left-padded ids -> (B, D): a real encoder's shape, padding ignored."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.emb = torch.nn.Embedding(30, 8, padding_idx=0)
        self.proj = torch.nn.Linear(8, 8)

    def forward(self, seqs: torch.Tensor) -> torch.Tensor:
        mask = (seqs != 0).unsqueeze(-1).float()
        pooled = (self.emb(seqs) * mask).sum(1) / mask.sum(1).clamp(min=1)
        return self.proj(pooled)


@pytest.mark.parametrize(
    ("cost", "b", "plan"),
    [
        ({1: 1.0, 2: 1.5, 4: 2.0}, 3, [4]),  # padding 1 row is cheaper than 2 + 1
        ({1: 1.0, 16: 2.0, 32: 6.0}, 17, [16, 1]),  # padding to 32 costs more than a second call
        ({1: 1.0, 16: 2.0, 32: 6.0}, 32, [16, 16]),  # the big bucket is dearer per row than two small ones
        ({1: 1.0, 16: 2.0, 32: 3.0}, 20, [32]),
        ({1: 1.0}, 3, [1, 1, 1]),
    ],
)
def test_the_cheapest_cover(cost: dict[int, float], b: int, plan: list[int]) -> None:
    plans = cheapest_covers(cost, max(cost))
    if b <= max(cost):
        assert plans[b] == plan
    else:  # beyond the largest bucket the encoder calls the program itself
        assert len(plans) == max(cost) + 1


def test_every_plan_covers_its_rows_with_no_bucket_wasted() -> None:
    plans = cheapest_covers({1: 0.2, 2: 0.3, 4: 0.45, 8: 0.8, 16: 1.2, 32: 2.6, 64: 5.8}, 64)
    for b, plan in enumerate(plans):
        assert sum(plan) >= b and (not plan or sum(plan) - min(plan) < b)


def test_answers_equal_the_program_at_every_batch_size() -> None:
    program = MeanPool().eval()
    enc = BucketedEncoder(program, max_len=6, max_batch=8)
    assert sorted(enc.traces) == [1, 2, 4, 8] and all(c > 0 for c in enc.cost.values())
    gen = torch.Generator().manual_seed(1)
    with torch.inference_mode():
        for b in range(1, 12):  # 9-11: past the largest bucket, the program itself
            seqs = torch.randint(0, 30, (b, 6), generator=gen)
            seqs[:, :2] = 0  # left padding
            torch.testing.assert_close(enc(seqs), program(seqs), atol=1e-6, rtol=1e-5)
