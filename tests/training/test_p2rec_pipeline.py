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

    for name in ("train_stage_a", "item_embeddings", "instance_level_sft_epoch_time"):
        monkeypatch.setattr(p2rec_module, name, fail)
    monkeypatch.setattr("training.pipeline.fit_model", fail)
    assert main(["p2rec", "--preset", "p2rec-tiny", "--output-dir", str(out)]) == 0
    assert json.loads((out / "metrics.json").read_text()) == json.loads(before)
