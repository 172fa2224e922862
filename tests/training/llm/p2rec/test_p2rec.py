from pathlib import Path

import numpy as np
import pytest

from training.data.types import SequenceDataset, Split
from training.llm.p2rec import P2RecConfig, run_p2rec
from training.llm.p2rec import pipeline as p2rec_module


def test_run_p2rec_end_to_end_and_resume(
    tiny_llm_dir: Path,
    toy_dataset: SequenceDataset,
    toy_split: Split,
    teacher_emb: np.ndarray,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    cfg = P2RecConfig(
        base_model=str(tiny_llm_dir),
        device="cpu",
        k=4,
        sweep_ks=[2, 4],
        target="teacher",
        epochs=1,
        batch_size=8,
        max_history_items=6,
        aug_dim=8,
        sft_timing_examples=2,
        max_users=20,
    )

    def score_fn(histories: list[np.ndarray]) -> np.ndarray:
        return np.tile(teacher_emb[:, 0], (len(histories), 1))  # prefers genre 0

    res = run_p2rec(cfg, toy_dataset, toy_split, teacher_emb, tmp_path, score_fn)
    aug = np.load(res.aug_path)
    assert aug.shape == (41, 8) and not aug[0].any()
    assert np.load(res.categories_path).shape == (41,)
    r = res.report
    assert r["stage_a"]["n_users"] == 20 and "counts_vs_teacher" in r["targets"]
    assert r["efficiency"]["ratio"] > 0 and r["stage_b"]["aug_dim"] == 8
    assert (tmp_path / "report.json").is_file() and (res.adapter_dir / "adapter").is_dir()

    def fail(*a: object, **k: object) -> None:
        raise AssertionError("a cached stage was recomputed")

    monkeypatch.setattr(p2rec_module, "train_stage_a", fail)
    monkeypatch.setattr(p2rec_module, "item_embeddings", fail)
    monkeypatch.setattr(p2rec_module, "measure_efficiency", fail)
    again = run_p2rec(cfg, toy_dataset, toy_split, teacher_emb, tmp_path, score_fn)
    assert again.aug_path == res.aug_path


def test_teacher_target_needs_a_score_fn(
    toy_dataset: SequenceDataset, toy_split: Split, teacher_emb: np.ndarray, tmp_path: Path
) -> None:
    with pytest.raises(ValueError, match="teacher_score_fn"):
        run_p2rec(
            P2RecConfig(k=4, target="teacher", sweep_ks=[]), toy_dataset, toy_split, teacher_emb, tmp_path
        )
