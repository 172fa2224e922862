"""The traced encoder: one batch-generic trace of an exported SASRec, or else a batch as the cheapest cover of
its rows by the traced bucket sizes; either way it answers exactly what the program answers, row for row, at
every batch size."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from service.index.fast_encoder import TracedEncoder, cheapest_covers
from training import export
from training.export import TABLE_BUDGET_ENV, UserEncoder, _table_agrees, export_encoder
from training.models.sasrec import FirstBlockTable, SASRec, SASRecConfig


def left_padded(b: int, max_len: int, n_items: int, gen: torch.Generator) -> torch.Tensor:
    seqs = torch.randint(1, n_items + 1, (b, max_len), generator=gen)
    for row in range(b):  # histories of every length, 1 .. max_len
        seqs[row, : row % max_len] = 0
    return seqs


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


class RowCount(MeanPool):
    """Uses the batch size as a plain number (a trace bakes it in): only per-bucket traces can serve it."""

    def forward(self, seqs: torch.Tensor) -> torch.Tensor:
        rows = int(seqs.shape[0])
        return super().forward(seqs) + torch.zeros(rows, 8)


def test_an_exported_sasrec_runs_as_one_trace_at_every_batch_size(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = SASRec(SASRecConfig(n_items=40, max_len=7, dim=16, n_layers=2, n_heads=2)).eval()
    table = export_encoder(model, tmp_path / "encoder.pt2", budget_mb=1)["first_block_table"]
    assert table["bytes"] == FirstBlockTable.nbytes(model.cfg) and 0 <= table["max_error"] < 1e-5
    program = torch.export.load(str(tmp_path / "encoder.pt2")).module()
    assert {name for name, _ in program.named_buffers()} >= {"table.items", "table.item_proj"}
    enc = TracedEncoder(program, max_len=7, max_batch=8)
    assert enc.generic is not None and enc.traces == {}  # no buckets needed
    gen = torch.Generator().manual_seed(1)
    with torch.inference_mode():
        for b in [*range(1, 12), 37]:  # past max_batch too
            seqs = left_padded(b, 7, 40, gen)
            torch.testing.assert_close(enc(seqs), program(seqs), atol=1e-6, rtol=1e-5)
            torch.testing.assert_close(enc(seqs), model.user_vector(seqs), atol=1e-5, rtol=1e-4)


def test_an_encoder_over_its_table_budget_or_with_a_wrong_table_is_exported_without_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    torch.manual_seed(0)
    model = SASRec(SASRecConfig(n_items=40, max_len=7, dim=16, n_layers=2, n_heads=2)).eval()
    assert export_encoder(model, tmp_path / "plain.pt2", budget_mb=0.01) == {"first_block_table": None}
    monkeypatch.setenv(TABLE_BUDGET_ENV, "0")
    assert export_encoder(model, tmp_path / "env.pt2") == {"first_block_table": None}
    monkeypatch.setenv(TABLE_BUDGET_ENV, "1")
    monkeypatch.setattr(export, "_table_agrees", lambda model, encoder: False)
    assert export_encoder(model, tmp_path / "refused.pt2") == {"first_block_table": None}
    monkeypatch.undo()
    encoder = UserEncoder(model, budget_mb=1)
    assert encoder.table is not None and _table_agrees(model, encoder)
    encoder.table.item_proj.mul_(1.01)  # a table 1 % off
    assert not _table_agrees(model, encoder)
    program = torch.export.load(str(tmp_path / "refused.pt2")).module()
    assert not [name for name, _ in program.named_buffers() if "table" in name]
    seqs = left_padded(5, 7, 40, torch.Generator().manual_seed(4))
    with torch.inference_mode():
        torch.testing.assert_close(program(seqs), model.user_vector(seqs), atol=1e-6, rtol=1e-5)


def test_a_graph_using_the_batch_size_otherwise_is_left_to_the_buckets(tmp_path: Path) -> None:
    class Batched(MeanPool):  # an exported graph that builds a (B, 8) tensor: -1 cannot stand in there
        def forward(self, seqs: torch.Tensor) -> torch.Tensor:
            return super().forward(seqs) + seqs.new_zeros((seqs.shape[0], 8), dtype=torch.float32)

    example = torch.ones((2, 6), dtype=torch.long)
    batch = torch.export.Dim("batch", min=1, max=64)
    program = torch.export.export(Batched().eval(), (example,), dynamic_shapes={"seqs": {0: batch}}).module()
    enc = TracedEncoder(program, max_len=6, max_batch=4)
    assert enc.generic is None and sorted(enc.traces) == [1, 2, 4]
    gen = torch.Generator().manual_seed(2)
    with torch.inference_mode():
        for b in range(1, 7):
            seqs = left_padded(b, 6, 29, gen)
            torch.testing.assert_close(enc(seqs), program(seqs), atol=1e-6, rtol=1e-5)


def test_a_plain_module_whose_trace_is_batch_free_needs_one_trace() -> None:
    program = MeanPool().eval()
    enc = TracedEncoder(program, max_len=6, max_batch=8)
    assert enc.generic is not None and enc.traces == {}


def test_answers_equal_the_program_at_every_batch_size() -> None:
    program = RowCount().eval()
    enc = TracedEncoder(program, max_len=6, max_batch=8)
    assert enc.generic is None  # the trace at 8 rows fails at 1
    assert sorted(enc.traces) == [1, 2, 4, 8] and all(c > 0 for c in enc.cost.values())
    gen = torch.Generator().manual_seed(1)
    with torch.inference_mode():
        for b in range(1, 12):  # 9-11: past the largest bucket, the program itself
            seqs = torch.randint(0, 30, (b, 6), generator=gen)
            seqs[:, :2] = 0  # left padding
            torch.testing.assert_close(enc(seqs), program(seqs), atol=1e-6, rtol=1e-5)
