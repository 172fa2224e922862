"""The whole DELRec chain through the CLI on `delrec-tiny` (60 ML-100K users, a randomly initialised tiny
Llama with SmolLM2's tokenizer): teacher, stage 1, stage 2, the ablation, the zero-shot rows, the blend, the
rerank-after-retrieval figures, the report and a bundle; then a rerun that must come from the caches.
Needs ../shared/data/ml-100k."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from training.cli import main

SHARED = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "ml-100k"
pytestmark = pytest.mark.skipif(not SHARED.is_dir(), reason="needs ../shared/data/ml-100k")
ROWS = {"sasrec", "zero_shot", "stage2_only", "delrec", "blend"}


@pytest.fixture(scope="module")
def chain(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    out, bundles, pub = (tmp_path_factory.mktemp(n) for n in ("delrec-tiny", "bundles", "published"))
    argv = ["delrec", "--preset", "delrec-tiny", "--output-dir", str(out), "--export-to", str(bundles),
            "--publish", str(pub)]
    assert main(argv) == 0
    return out, bundles, pub


def test_report_has_the_five_rows_over_seeds_and_the_rerank_figures(chain: tuple[Path, Path, Path]) -> None:
    out, _, pub = chain
    metrics = json.loads((out / "metrics.json").read_text())
    assert set(metrics) == ROWS
    for row in metrics.values():
        assert set(row["cand20"]) == {"HR@1", "HR@5", "NDCG@5"} and len(row["cand20"]["HR@1"]["seeds"]) == 2
    report = json.loads((out / "delrec_report.json").read_text())
    assert {"teacher top-20 (retrieval order)", "DELRec blend rerank"} <= set(report["rows"])
    seed0 = report["per_seed"]["0"]
    assert {"HR@1", "HR@1_reversed", "top1_changed_share"} <= set(seed0["position_bias"])
    assert seed0["lambda"] in report["config"]["blend_lambdas"]
    assert "title_agreement" in seed0["scores_info"]
    md = (out / "delrec_report.md").read_text()
    assert "Position bias" in md and "Rerank after retrieval" in md and "random-tiny" in md
    assert (pub / "delrec-tiny.md").is_file() and (pub / "delrec-tiny.json").is_file()


def test_bundle_carries_the_ranker_with_checksums(chain: tuple[Path, Path, Path]) -> None:
    from recbundle import load_manifest

    _, bundles, _ = chain
    root = (bundles / "current").resolve()
    manifest = load_manifest(root)  # verifies every checksum
    spec = manifest.llm.rerank
    assert spec is not None and spec.n_candidates == 20 and spec.adapter == "rerank" and spec.soft_prompt
    assert manifest.llm.lora_adapters == {"rerank": "llm/rerank"}
    assert "llm/rerank/adapter_config.json" in manifest.files and "llm/soft_prompt.npy" in manifest.files
    soft = np.load(root / "llm" / "soft_prompt.npy")
    assert soft.shape[0] == 4 and np.isfinite(soft).all()
    assert manifest.llm.base is not None and Path(manifest.llm.base).is_dir()  # random-tiny: a local folder
    assert manifest.encoder.variant == "delrec"


def test_rerun_comes_from_the_caches(chain: tuple[Path, Path, Path], caplog: pytest.LogCaptureFixture) -> None:
    out, _, _ = chain
    caplog.set_level("INFO")
    assert main(["delrec", "--preset", "delrec-tiny", "--output-dir", str(out)]) == 0
    computed = [r.message for r in caplog.records if "computed in" in r.message and "delrec_" in r.message]
    assert computed == []
