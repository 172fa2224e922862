"""ReLRec end to end on the toy review data and a tiny random Llama: labels -> plain fine-tune -> ReLRec ->
cand20 test -> language figures; the report is written and a rerun loads every stage from the cache."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np

from training.config import load_config
from training.data.split import leave_one_out
from training.data.types import SequenceDataset
from training.llm.relrec.config import RelRecConfig, relrec_config
from training.llm.relrec.pipeline import REPORT, run_relrec


def test_relrec_tiny_preset_parses() -> None:
    cfg = relrec_config(load_config("relrec-tiny"))
    assert cfg.base_model == "random-tiny" and cfg.tune(0).steps_from == "rec"


def test_pipeline_runs_end_to_end(tiny_llm_dir: Path, toy_review_dataset: SequenceDataset,
                                  tmp_path: Path) -> None:
    split = leave_one_out(toy_review_dataset)
    run_cfg = load_config("relrec-tiny")
    run_cfg = replace(run_cfg, eval=replace(run_cfg.eval, seeds=[0]))
    cfg = RelRecConfig(base_model=str(tiny_llm_dir), device="cpu", label_extractor="frequent",
                       history_items=3, max_title_chars=24, max_label_tokens=16, examples_per_user=1,
                       max_label_items=4, batch_size=2, max_steps=2, lora_r=4, max_users=6,
                       valid_users=4, eval_users=6, perplexity_docs=6, perplexity_max_tokens=32)
    report = run_relrec(cfg, run_cfg, toy_review_dataset, split, tmp_path)
    assert json.loads((tmp_path / REPORT).read_text())["rows"] == json.loads(json.dumps(report["rows"]))
    assert set(report["rows"]) == {"zero_shot", "plain", "relrec"}
    assert 0.0 <= report["rows"]["relrec"]["HR@1"]["mean"] <= 1.0
    assert report["labels"]["source"] == "reviews" and report["questions"]["test"] == 6
    for name in ("base", "plain", "relrec"):
        assert np.isfinite(report["language"][name]["review_perplexity"]["mean"])
        assert report["language"][name]["explain_loglik"]["mean"] < 0
    seed0 = report["per_seed"]["0"]
    assert set(seed0["relrec"]["tune"]["n_examples"]) == {"rec", "user", "item"}
    assert set(seed0["plain"]["tune"]["n_examples"]) == {"rec"}
    stages = sorted(p.relative_to(tmp_path) for p in tmp_path.glob("relrec_*/*"))
    assert len(stages) == 1 + 2 + 3 + 3  # labels, two fine-tunes, three score and three language stages
    again = run_relrec(cfg, run_cfg, toy_review_dataset, split, tmp_path)  # every stage from the cache
    assert sorted(p.relative_to(tmp_path) for p in tmp_path.glob("relrec_*/*")) == stages
    assert again["rows"] == report["rows"]
