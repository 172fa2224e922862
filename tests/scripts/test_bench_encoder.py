import json
from pathlib import Path

import pytest
import torch

from recbundle import write_manifest
from recbundle.manifest import load_manifest
from scripts.bench_encoder import histories, markdown, run
from service.index.bundle import load_bundle
from tests.service.bundle_factory import build_bundle
from training.export import export_encoder
from training.models.sasrec import SASRec, SASRecConfig


def _sasrec_bundle(root: Path, model: SASRec, budget_mb: float) -> Path:
    """A test bundle whose encoder is `model`, exported with or without its first-block table."""
    build_bundle(root, dim=16, max_len=20)
    serving = export_encoder(model, root / "encoder.pt2", budget_mb=budget_mb)
    (root / "encoder.json").write_text(json.dumps({"kind": "sasrec", **serving}))
    write_manifest(root, load_manifest(root, verify=False))
    return root


@pytest.fixture(scope="module")
def bundles(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    torch.manual_seed(0)
    model = SASRec(SASRecConfig(n_items=50, max_len=20, dim=16, n_layers=2, n_heads=2)).eval()
    tmp = tmp_path_factory.mktemp("bench-encoder")
    return _sasrec_bundle(tmp / "plain", model, 0), _sasrec_bundle(tmp / "table", model, 1)


@pytest.fixture()
def bodies(tmp_path: Path) -> Path:
    path = tmp_path / "bodies.jsonl"
    rows = [{"history": [str(1000 + i) for i in range(1, n + 1)], "k": 5} for n in (3, 25, 7)]
    rows.append({"history": [{"item_id": "1004"}, "9999"]})  # an event object and an id no bundle knows
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    return path


def test_histories_are_left_padded_dense_ids_without_unknown_items(bundles: tuple[Path, Path], bodies: Path) -> None:
    seqs = histories(load_bundle(bundles[0]), bodies)
    assert seqs.shape == (4, 20)
    assert seqs[0, -3:].tolist() == [1, 2, 3] and not seqs[0, :-3].any()
    assert seqs[1].tolist() == list(range(6, 26))  # the newest 20 of 25
    assert seqs[3, -1] == 4 and not seqs[3, :-1].any()


def test_the_report_times_every_bundle_at_every_batch_size(bundles: tuple[Path, Path], bodies: Path) -> None:
    threads = torch.get_num_threads()
    report = run(list(bundles), bodies, [1, 3], rounds=2, calls=3, labels=["no table", "table"])
    assert report["first_block_table"][0] is None and report["first_block_table"][1]["bytes"] > 0
    assert report["order_per_round"] == [[0, 1], [1, 0]]
    for batch in ("1", "3"):
        row = report["results"][batch]
        assert len(row["us_per_call"]) == 2 and all(t > 0 for t in row["us_per_call"])
        assert len(row["ratio_to_first"]) == 1
    text = markdown(report)
    assert "no first-block table" in text and ": table (first-block table" in text
    assert text.count("\n| 1 |") == 1 and text.count("\n| 3 |") == 1 and "served as one batch-generic trace" in text
    assert report["encoder_mode"] == ["one batch-generic trace"] * 2 and torch.get_num_threads() == threads
    with pytest.raises(SystemExit, match="1 labels for 2 bundles"):
        run(list(bundles), bodies, [1], rounds=1, calls=1, labels=["one"])
