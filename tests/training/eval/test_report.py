"""Aggregation math, markdown cells and written files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from training.eval.report import aggregate, markdown_table, write_metrics_json, write_report

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"

PER_SEED = {
    "sasrec": [
        {"full": {"HR@10": 0.10, "NDCG@10": 0.05}, "cand20": {"HR@1": 0.30}},
        {"full": {"HR@10": 0.20, "NDCG@10": 0.07}, "cand20": {"HR@1": 0.40}},
        {"full": {"HR@10": 0.30, "NDCG@10": 0.09}, "cand20": {"HR@1": 0.50}},
    ],
    "gru4rec": [
        {"full": {"HR@10": 0.15, "NDCG@10": 0.10}, "cand20": {"HR@1": 0.20}},
        {"full": {"HR@10": 0.15, "NDCG@10": 0.12}, "cand20": {"HR@1": 0.20}},
        {"full": {"HR@10": 0.15, "NDCG@10": 0.14}, "cand20": {"HR@1": 0.20}},
    ],
}


@pytest.mark.parametrize(
    ("model", "protocol", "metric", "mean", "std"),
    [
        ("sasrec", "full", "HR@10", 0.20, 0.10),  # sample std of (.1, .2, .3) = sqrt(.02 / 2)
        ("sasrec", "full", "NDCG@10", 0.07, 0.02),
        ("sasrec", "cand20", "HR@1", 0.40, 0.10),
        ("gru4rec", "full", "HR@10", 0.15, 0.0),
        ("gru4rec", "full", "NDCG@10", 0.12, 0.02),
    ],
)
def test_aggregate_table(model: str, protocol: str, metric: str, mean: float, std: float) -> None:
    stat = aggregate(PER_SEED, seeds=[0, 1, 2])[model][protocol][metric]
    assert stat["mean"] == pytest.approx(mean)
    assert stat["std"] == pytest.approx(std)
    assert stat["seeds"] == [run[protocol][metric] for run in PER_SEED[model]]


def test_aggregate_one_seed_has_zero_std() -> None:
    stat = aggregate({"m": [{"full": {"HR@10": 0.25}}]})["m"]["full"]["HR@10"]
    assert stat == {"mean": 0.25, "std": 0.0, "seeds": [0.25]}


def test_aggregate_rejects_inconsistent_runs() -> None:
    with pytest.raises(ValueError, match="seeds"):
        aggregate(PER_SEED, seeds=[0, 1])
    with pytest.raises(ValueError, match="missing"):
        aggregate({"m": [{"full": {"HR@10": 0.1}}, {"full": {"NDCG@10": 0.1}}]})


def test_markdown_table_cells() -> None:
    md = markdown_table(aggregate(PER_SEED), metrics_per_protocol={"full": ["HR@10", "NDCG@10"]})
    assert "### full" in md and "### cand20" in md
    assert "| model | HR@10 | NDCG@10 |" in md
    assert "| sasrec | **0.2000 ± 0.1000** | 0.0700 ± 0.0200 |" in md
    assert "| gru4rec | 0.1500 ± 0.0000 | **0.1200 ± 0.0200** |" in md
    # cand20 defaults to its own metrics that someone reported
    assert "| model | HR@1 |" in md
    assert "| sasrec | **0.4000 ± 0.1000** |" in md


def test_markdown_missing_cells_and_flags() -> None:
    results = aggregate(
        {
            "a": [{"full": {"HR@10": 0.2, "NDCG@10": 0.1, "mask_history": 1.0}}],
            "b": [{"full": {"HR@10": 0.3, "mask_history": 1.0}}],
        }
    )
    md = markdown_table(results)
    assert "| model | HR@10 | NDCG@10 |" in md  # protocol order; the mask_history flag is no column
    assert "| b | **0.3000 ± 0.0000** | – |" in md


def test_markdown_bolds_ties() -> None:
    md = markdown_table(aggregate({"a": [{"x": {"m": 0.5}}], "b": [{"x": {"m": 0.5}}]}))
    assert md.count("**0.5000 ± 0.0000**") == 2


def test_metrics_json_shape(tmp_path: Path) -> None:
    results = aggregate(PER_SEED)
    path = write_metrics_json(results, tmp_path / "sub" / "metrics.json")
    loaded = json.loads(path.read_text())
    assert loaded == results
    assert set(loaded) == {"sasrec", "gru4rec"}
    assert set(loaded["sasrec"]) == {"full", "cand20"}
    for by_protocol in loaded.values():
        for by_metric in by_protocol.values():
            for stat in by_metric.values():
                assert set(stat) == {"mean", "std", "seeds"}
                assert len(stat["seeds"]) == 3


def test_write_report_files(tmp_path: Path) -> None:
    curves = {
        "sasrec": {
            s: {"epoch": [1, 2, 3], "train_loss": [1.0, 0.8, 0.7], "valid_ndcg@10": [0.1, 0.2, 0.25]}
            for s in (0, 1)
        },
        "gru4rec": {0: {"epoch": [1, 2], "train_loss": [1.2, 1.0], "valid_ndcg@10": [0.05, 0.1]}},
    }
    paths = write_report(aggregate(PER_SEED), tmp_path, curves=curves, title="ML-100K", command="make eval")
    names = {p.name for p in paths}
    assert names == {
        "metrics.json",
        "report.md",
        "metrics_full.png",
        "metrics_cand20.png",
        "training_curves.png",
    }
    for p in paths:
        assert p.exists() and p.parent == tmp_path
        if p.suffix == ".png":
            assert p.read_bytes()[:8] == PNG_MAGIC
    report = (tmp_path / "report.md").read_text()
    assert report.startswith("# ML-100K")
    assert "`make eval`" in report and "![training_curves](training_curves.png)" in report
    assert "| sasrec | **0.2000 ± 0.1000** |" in report


def test_write_report_without_curves(tmp_path: Path) -> None:
    paths = write_report(aggregate(PER_SEED), tmp_path)
    assert "training_curves.png" not in {p.name for p in paths}
