"""The whole P2Rec chain through the CLI on `p2rec-tiny` (60 ML-100K users, a randomly initialised tiny
Llama with SmolLM2's tokenizer): teacher, LLM stages, SR variants over two seeds, report, bundle; then a
rerun that must come entirely from the caches. CI budget for this chain: well under 3 minutes on 2 cores.
Needs ../shared/data/ml-100k and the SmolLM2 tokenizer (`python -m recbundle.base_model`)."""

import json
from pathlib import Path

import pytest

from training.cli import main
from training.llm.p2rec import pipeline as p2rec_module

SHARED = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "ml-100k"
# no skip for a missing SmolLM2 tokenizer: random_tiny converts it on demand (a skip hid these tests on new machines)
pytestmark = pytest.mark.skipif(not SHARED.is_dir(), reason="needs ../shared/data/ml-100k")
MODELS = {"sasrec", "sasrec_adapter", "sasrec_init"}


@pytest.fixture(scope="module")
def chain(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    out, bundles = tmp_path_factory.mktemp("p2rec-tiny"), tmp_path_factory.mktemp("bundles")
    argv = ["p2rec", "--preset", "p2rec-tiny", "--output-dir", str(out), "--export-to", str(bundles)]
    assert main(argv) == 0
    return out, bundles


def test_metrics_compare_plain_sasrec_and_the_variants_on_every_protocol(chain: tuple[Path, Path]) -> None:
    out, _ = chain
    metrics = json.loads((out / "metrics.json").read_text())
    assert set(metrics) == MODELS
    for model in metrics.values():
        assert set(model) == {"full", "sampled100", "cand20"}
        assert len(model["full"]["NDCG@10"]["seeds"]) == 2
    report = (out / "p2rec_report.md").read_text()
    assert "sasrec_adapter" in report and "Relative change" in report and "random-tiny" in report
    assert (out / "training_curves.png").stat().st_size > 0


def test_p2rec_report_json_has_the_efficiency_ratio_and_every_stage(chain: tuple[Path, Path]) -> None:
    out, _ = chain
    report = json.loads((out / "p2rec" / "report.json").read_text())
    assert 0 < report["efficiency"]["ratio"] < 1  # one example per user vs one per history prefix
    assert [int(r["k"]) for r in report["categories"]["sweep"]] == [4, 8]
    assert "counts_vs_teacher" in report["targets"]
    assert report["stage_a"]["curves"]["epoch"] == [1]
    assert report["stage_b"]["aug_dim"] == 16
    assert report["efficiency"]["device"].startswith("cpu: ")  # timings are keyed by the device they ran on


def test_regimes_target_variants_and_the_cold_split(chain: tuple[Path, Path], tmp_path: Path) -> None:
    import subprocess
    import sys

    from training.eval.regimes import REGIMES

    out, _ = chain
    doc = json.loads((out / "p2rec_report.json").read_text())
    assert set(doc["regimes"]) == set(REGIMES)  # `cold` comes from the cold-start split's own chain
    for regime in doc["regimes"].values():
        assert set(regime["rows"]) == MODELS and regime["n_users"] > 0
    for model, by_protocol in doc["rows"].items():  # the regime "all" is the overall evaluation
        for protocol, metrics in by_protocol.items():
            got = doc["regimes"]["all"]["rows"][model][protocol]
            assert all(got[m]["seeds"] == metrics[m]["seeds"] for m in ("NDCG@10", "HR@10"))
    # on the cold split plain SASRec never trained a cold item's row: it cannot rank it first
    assert doc["regimes"]["cold"]["rows"]["sasrec"]["full"]["HR@1"]["mean"] == 0.0
    assert (out / "cold" / "p2rec" / "report.json").is_file()
    assert doc["best_variant"] in MODELS - {"sasrec"}
    fits = doc["p2rec"]["target_variants"]
    assert set(fits) == {"teacher", "counts", "recency"}  # the preset's target first, then target_variants
    assert len({f["fit"]["n_users"] for f in fits.values()}) == 1  # every variant on the same users
    md = (out / "p2rec_report.md").read_text()
    assert "### Regime: cold-start targets" in md and "### Stage (a) target variants" in md
    summary = tmp_path / "summary"
    script = Path(__file__).resolve().parents[2] / "scripts" / "p2rec_summary.py"
    subprocess.run([sys.executable, str(script), str(out / "p2rec_report.json"), "--out", str(summary)], check=True)
    text = summary.with_suffix(".md").read_text()
    assert "| cold (" in text and "Efficiency, like for like" in text


def _mean_valid_ndcg(out: Path, model: str) -> float:
    paths = sorted((out / "models").glob(f"{model}-*/seed*/result.json"))
    assert len(paths) == 2
    return sum(json.loads(p.read_text())["best_valid_ndcg@10"] for p in paths) / len(paths)


def test_the_bundle_is_the_best_variant(chain: tuple[Path, Path]) -> None:
    from recbundle import load_manifest

    out, bundles = chain
    manifest = load_manifest(bundles / "current")
    best = max(("sasrec_adapter", "sasrec_init"), key=lambda name: _mean_valid_ndcg(out, name))
    assert manifest.encoder.kind == best
    assert manifest.encoder.variant == {"sasrec_adapter": "p2rec-adapter", "sasrec_init": "p2rec-init"}[best]
    assert {"p2rec/pca.npz", "p2rec/stage_a/head.pt"} <= set(manifest.files)
    assert manifest.metrics["over_seeds"]["full"]["NDCG@10"]["seeds"]


def test_a_rerun_comes_from_the_caches(chain: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    out, _ = chain
    before = (out / "metrics.json").read_text()

    def fail(*a: object, **k: object) -> None:
        raise AssertionError("a cached step was recomputed")

    for name in ("train_stage_a", "item_embeddings", "measure_efficiency"):
        monkeypatch.setattr(p2rec_module, name, fail)
    monkeypatch.setattr("training.pipeline.fit_model", fail)
    assert main(["p2rec", "--preset", "p2rec-tiny", "--output-dir", str(out)]) == 0
    assert json.loads((out / "metrics.json").read_text()) == json.loads(before)
