"""The whole `tiny` preset through the CLI: prepare, a short training of each model over two seeds, the
three protocols, the report files and the teacher export. Reads ML-100K from ../shared/data."""

import json
from pathlib import Path

import numpy as np
import pytest

from training.cli import main
from training.config import load_config

SHARED = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "ml-100k"
pytestmark = pytest.mark.skipif(not SHARED.is_dir(), reason="needs ../shared/data/ml-100k")


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("tiny")
    assert main(["run", "--preset", "tiny", "--output-dir", str(out)]) == 0
    return out


def test_metrics_json_has_the_reported_shape(tiny_run: Path) -> None:
    metrics = json.loads((tiny_run / "metrics.json").read_text())
    assert set(metrics) == {"popularity", "gru4rec", "sasrec"}
    for model in metrics.values():
        assert set(model) == {"full", "sampled100", "cand20"}
        cell = model["full"]["NDCG@10"]
        assert set(cell) == {"mean", "std", "seeds"} and len(cell["seeds"]) == 2
        assert {"HR@1", "HR@5", "NDCG@5"} <= set(model["cand20"])
    for name in ("report.md", "training_curves.png", "metrics_full.png"):
        assert (tiny_run / name).stat().st_size > 0


def test_teacher_export(tiny_run: Path) -> None:
    t = tiny_run / "teacher"
    meta = json.loads((t / "teacher.json").read_text())
    top = np.load(t / "topk_test.npy")
    emb = np.load(t / "item_embeddings.npy")
    assert top.shape == (60, meta["top_k"])
    assert emb.shape == (meta["n_items"] + 1, 16)
    assert top.min() >= 1 and top.max() <= meta["n_items"]
    assert all(len(set(row)) == len(row) for row in top.tolist())


def test_rerun_resumes_from_cache(tiny_run: Path, capsys: pytest.CaptureFixture[str]) -> None:
    before = (tiny_run / "metrics.json").read_text()
    assert main(["evaluate", "--preset", "tiny", "--output-dir", str(tiny_run)]) == 0
    assert json.loads((tiny_run / "metrics.json").read_text()) == json.loads(before)
    assert "sasrec" in capsys.readouterr().out


def test_preset_rejects_unknown_keys(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: bad\ndata: {dataset: ml-100k, kcore: 5}\nmodels: {popularity: {}}\n")
    with pytest.raises(ValueError, match="kcore"):
        load_config(str(bad))


def test_export_writes_a_bundle_the_contract_accepts(tiny_run: Path, tmp_path: Path) -> None:
    import faiss
    import torch

    from recbundle import load_manifest

    assert main(["export", "--preset", "tiny", "--output-dir", str(tiny_run), "--out", str(tmp_path)]) == 0
    bundle = tmp_path / "current"  # the export repoints this link at the new bundle
    assert bundle.is_symlink()
    m = load_manifest(bundle)
    assert m.index.type == "Flat" and m.encoder.kind == "sasrec" and m.metrics["test"]["full"]["NDCG@10"] >= 0
    encoder = torch.export.load(str(bundle / m.encoder.path)).module()
    seqs = torch.zeros(3, m.encoder.max_len, dtype=torch.long)
    seqs[:, -2:] = torch.tensor([1, 2])
    users = encoder(seqs)
    assert users.shape == (3, m.encoder.dim)
    index = faiss.read_index(str(bundle / m.index.path))
    scores, ids = index.search(users.detach().numpy(), 5)
    emb = np.load(bundle / m.index.embeddings_path)
    np.testing.assert_allclose(scores[0], emb[ids[0]] @ users[0].detach().numpy(), rtol=1e-4, atol=1e-5)
    assert ids.min() >= 1 and ids.max() <= m.n_items
