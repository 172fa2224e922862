"""The whole ReLRec chain through the CLI on `relrec-tiny` (58 Amazon Magazine users, a randomly initialised
tiny Llama with SmolLM2's tokenizer): teacher, the per-seed SASRec row, labels and their quality, the plain
fine-tune and ReLRec, cand20 rows, the perplexity section, the report and a bundle with the explain adapter and
the item labels; then a rerun that must come from the caches. Needs ../shared/data (Amazon Magazine)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from training.cli import main
from training.llm.relrec.report import label_source_text, language_figures, language_table

SHARED = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "amazon2018-magazine-subscriptions-5core"
ROWS = {"sasrec", "zero_shot", "plain", "relrec"}


@pytest.fixture(scope="module")
def chain(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    if not SHARED.is_dir():
        pytest.skip("needs ../shared/data/amazon2018-magazine-subscriptions-5core")
    out, bundles, pub = (tmp_path_factory.mktemp(n) for n in ("relrec-tiny", "bundles", "published"))
    argv = ["relrec", "--preset", "relrec-tiny", "--output-dir", str(out), "--export-to", str(bundles),
            "--publish", str(pub)]
    assert main(argv) == 0
    return out, bundles, pub


def test_report_has_the_rows_over_seeds_and_the_language_figures(chain: tuple[Path, Path, Path]) -> None:
    out, _, pub = chain
    metrics = json.loads((out / "metrics.json").read_text())
    assert set(metrics) == ROWS
    for row in metrics.values():
        assert set(row["cand20"]) == {"HR@1", "HR@5", "NDCG@5"} and len(row["cand20"]["HR@1"]["seeds"]) == 2
    report = json.loads((out / "relrec_report.json").read_text())
    assert report["rows"] == metrics and report["drift_target"] == 1.10
    assert set(report["language"]) == {"base", "plain", "relrec"}
    for name, figures in report["language"].items():
        assert math.isfinite(figures["review_perplexity"]["mean"]) and figures["explain_loglik"]["mean"] < 0
        assert len(figures["perplexity_vs_base"]["seeds"]) == (1 if name == "base" else 2)
    assert report["labels"]["source"] == "reviews" and "lexical_label" in report["labels"]["quality"]["item"]
    md = (out / "relrec_report.md").read_text()
    for text in ("Language keeping", "× base", "target <= 1.10", "drifts", "Pseudo-labels", "REDUCED",
                 "random-tiny", "python -m training relrec --preset relrec-tiny"):
        assert text in md, text
    assert (out / "metrics_cand20.png").is_file() and (out / "metrics_language.png").is_file()
    assert {p.name for p in pub.iterdir()} == {"relrec-tiny.md", "relrec-tiny.json",
                                              "relrec-tiny-metrics_cand20.png", "relrec-tiny-metrics_language.png"}
    assert "](relrec-tiny-metrics_language.png)" in (pub / "relrec-tiny.md").read_text()


def test_bundle_carries_the_explain_adapter_and_item_labels(chain: tuple[Path, Path, Path]) -> None:
    from recbundle import load_manifest

    _, bundles, _ = chain
    root = (bundles / "current").resolve()
    manifest = load_manifest(root)  # verifies every checksum
    assert manifest.llm.lora_adapters == {"explain": "llm/explain"} and manifest.llm.rerank is None
    assert "llm/explain/adapter_config.json" in manifest.files
    assert manifest.llm.item_labels == "llm/item_labels.json" and manifest.llm.item_labels in manifest.files
    labels = json.loads((root / manifest.llm.item_labels).read_text())
    assert labels["source"] == "reviews" and labels["items"]
    assert all(1 <= int(i) <= manifest.n_items and text for i, text in labels["items"].items())
    assert manifest.llm.base is not None and Path(manifest.llm.base).is_dir()  # random-tiny: a local folder
    assert manifest.encoder.variant == "relrec" and manifest.metrics["label_source"] == "reviews"


def test_rerun_comes_from_the_caches(chain: tuple[Path, Path, Path], caplog: pytest.LogCaptureFixture) -> None:
    out, _, _ = chain
    caplog.set_level("INFO")
    assert main(["relrec", "--preset", "relrec-tiny", "--output-dir", str(out)]) == 0
    computed = [r.message for r in caplog.records if "computed in" in r.message and "relrec_" in r.message]
    assert computed == []


def test_a_dataset_without_reviews_reports_no_perplexity_and_names_the_fallback() -> None:
    lang = {"review": None, "explain": {"mean_token_loglik": -2.0}}
    tuned = {"review": None, "explain": {"mean_token_loglik": -2.5}}
    relrec = {"base_language": lang, "per_seed": {"0": {"plain": {"language": tuned},
                                                        "relrec": {"language": tuned}}}}
    figures = language_figures(relrec)
    assert math.isnan(figures["relrec"]["perplexity_vs_base"]["mean"])
    assert figures["plain"]["explain_vs_base"]["mean"] == pytest.approx(-0.5)
    assert "n/a (no reviews)" in language_table(figures)
    assert "fallback labels from genres/era/title words" in label_source_text("metadata", "yake")


def test_export_carries_another_bundles_rerank_stage(chain: tuple[Path, Path, Path], tmp_path: Path) -> None:
    """`--rerank-from`: one bundle that reranks (DELRec's stage) and explains (ReLRec); make demo's bundle."""
    import shutil

    from recbundle import BundleError, RerankSpec, load_manifest, write_manifest

    out, bundles, _ = chain
    # a reranking bundle of the same retrieval model: this chain's bundle with a rerank stage added
    src = (bundles / "current").resolve()
    ranker = tmp_path / "ranker"
    shutil.copytree(src, ranker)
    shutil.copytree(ranker / "llm" / "explain", ranker / "llm" / "rerank")
    m = load_manifest(ranker, verify=False)
    spec = RerankSpec(adapter="rerank", n_candidates=20, history_items=5, blend_lambda=0.5, soft_prompt=False)
    write_manifest(ranker, m.model_copy(update={"llm": m.llm.model_copy(update={
        "lora_adapters": {**m.llm.lora_adapters, "rerank": "llm/rerank"}, "rerank": spec})}))
    both = tmp_path / "both"
    assert main(["relrec", "--preset", "relrec-tiny", "--output-dir", str(out), "--export-to", str(both),
                 "--rerank-from", str(ranker)]) == 0
    got = load_manifest((both / "current").resolve())
    assert got.llm.lora_adapters == {"explain": "llm/explain", "rerank": "llm/rerank"}
    assert got.llm.rerank == spec and got.llm.item_labels == "llm/item_labels.json"
    assert got.files["llm/rerank/adapter_model.safetensors"] == m.files["llm/explain/adapter_model.safetensors"]
    # a bundle of another retrieval model is refused: its blend would mix two models' scores
    emb = ranker / "item_embeddings.npy"
    emb.write_bytes(emb.read_bytes()[:-4] + b"\0\0\0\1")
    write_manifest(ranker, load_manifest(ranker, verify=False))
    with pytest.raises(BundleError, match="another retrieval model"):
        main(["relrec", "--preset", "relrec-tiny", "--output-dir", str(out), "--export-to", str(both),
              "--rerank-from", str(ranker)])


def test_explanation_report_runs_both_explainers_on_the_bundle(chain: tuple[Path, Path, Path], tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """scripts/explain_report.py on the chain's bundle (random tiny LLM: the plumbing, not the quality)."""
    import argparse
    import asyncio
    import importlib.util
    import sys

    out, bundles, _ = chain
    script = Path(__file__).resolve().parents[2] / "scripts" / "explain_report.py"
    spec = importlib.util.spec_from_file_location("explain_report", script)
    assert spec is not None and spec.loader is not None
    er = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "explain_report", er)
    spec.loader.exec_module(er)
    monkeypatch.setenv("SEQREC_LLM_DEVICE", "cpu")
    monkeypatch.setattr(er, "test_histories", lambda preset, n, h, seed=0: _histories(out, n, h))
    args = argparse.Namespace(bundle=str(bundles / "current"), preset="relrec-tiny", users=3, k=2, history=5, seed=0,
                              max_new_tokens=6, stream_users=1, examples=2, explainers=["zero_shot", "tuned"],
                              no_labels=False, note="REDUCED: plumbing", name=None, publish=None)
    report = asyncio.run(er.main_async(args))
    assert set(report["rows"]) == {"zero_shot", "tuned"}
    for row in report["rows"].values():
        assert row["first_pass"]["coverage"]["mean"] == 1.0  # the first pass writes a text for every item
        assert 0.0 <= row["served"]["grounded"]["mean"] <= 1.0 and row["served"]["latency_ms_p50"]["mean"] > 0
    assert all(r["stream"]["stream_equals_batch"] == 1.0 and r["stream"]["prompts"] == 2 for r in report["explainers"].values())
    md = er.markdown(report)
    assert "REDUCED: plumbing" in md and "| tuned | served |" in md and report["config"]["labels_in_prompt"]


def _histories(out: Path, n: int, h: int) -> list[tuple[int, list[int]]]:
    from training import pipeline
    from training.config import load_config

    _, split = pipeline.prepare_stage(load_config("relrec-tiny", {"output_dir": str(out)}))
    return [(u, [int(i) for i in split.test_history[u][-h:]]) for u in range(n)]
