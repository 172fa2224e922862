from __future__ import annotations

import json
import shutil
from pathlib import Path

import faiss
import numpy as np
import pytest
import torch

from recbundle import BundleError, load_manifest, write_manifest
from service.index.bundle import load_bundle
from service.index.catalogue import Catalogue


@pytest.fixture
def copy(bundle_dir: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(bundle_dir, tmp_path / "b"))


def test_loads_and_scores(bundle_dir: Path) -> None:
    b = load_bundle(bundle_dir)
    assert (b.n_items, b.max_len, b.on_gpu) == (50, 20, False)
    seqs = torch.zeros((3, b.max_len), dtype=torch.int64)
    seqs[:, -1] = torch.tensor([1, 21, 41])
    users = b.encoder(seqs).numpy()
    assert users.shape == (3, 16)
    _, ids = b.index.search(users, 1)
    assert ids[:, 0].tolist() == [1, 21, 41]  # mean of one item is that item: its own nearest neighbour


def test_encoder_takes_any_batch_size(bundle_dir: Path) -> None:
    b = load_bundle(bundle_dir)
    for batch in (1, 7, 300):
        assert b.encoder(torch.ones((batch, b.max_len), dtype=torch.int64)).shape == (batch, 16)


def test_tampered_file(copy: Path) -> None:
    with (copy / "index.faiss").open("r+b") as f:
        f.seek(100)
        byte = f.read(1)
        f.seek(100)
        f.write(bytes([(byte[0] + 1) % 256]))
    with pytest.raises(BundleError, match="index.faiss fails its sha256 check"):
        load_bundle(copy)


def test_unlisted_file(copy: Path) -> None:
    (copy / "extra.bin").write_bytes(b"x")
    with pytest.raises(BundleError, match="does not list"):
        load_bundle(copy)


def test_wrong_embedding_shape_even_with_valid_checksums(copy: Path) -> None:
    np.save(copy / "item_embeddings.npy", np.zeros((10, 16), dtype=np.float32))
    write_manifest(copy, load_manifest(copy, verify=False))
    with pytest.raises(BundleError, match=r"item_embeddings.npy has shape \(10, 16\)"):
        load_bundle(copy)


def test_catalogue_must_be_dense(tmp_path: Path) -> None:
    path = tmp_path / "items.jsonl"
    path.write_text(
        json.dumps({"item_id": 1, "title": "a"}) + "\n" + json.dumps({"item_id": 3, "title": "b"}) + "\n"
    )
    with pytest.raises(BundleError, match="dense"):
        Catalogue.from_jsonl(path)
    path.write_text('{"item_id": 1}\n')
    with pytest.raises(BundleError, match="line 1"):
        Catalogue.from_jsonl(path)


def test_index_stays_on_the_cpu_when_faiss_cannot_move_it_to_a_gpu(
    bundle_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With GPUs, an index type FAISS's GPU code lacks (HNSW: "This index type is not implemented on GPU",
    seen on an H100) is served from the CPU instead of failing the load."""
    import faiss

    def refuse(index: object) -> object:
        raise RuntimeError("This index type is not implemented on GPU.")

    monkeypatch.setattr(faiss, "get_num_gpus", lambda: 1, raising=False)
    monkeypatch.setattr(faiss, "index_cpu_to_all_gpus", refuse, raising=False)
    b = load_bundle(bundle_dir)
    assert not b.on_gpu and b.index.ntotal == b.n_items


def _with_labels(root: Path, body: object) -> None:
    (root / "llm").mkdir(exist_ok=True)
    (root / "llm" / "item_labels.json").write_text(json.dumps(body))
    m = load_manifest(root, verify=False)
    write_manifest(root, m.model_copy(update={"llm": m.llm.model_copy(update={"item_labels": "llm/item_labels.json"})}))


def test_item_labels_load_with_their_source(copy: Path) -> None:
    _with_labels(copy, {"source": "metadata", "items": {"3": "comedy; 1970s; frankenstein", "41": "animation"}})
    b = load_bundle(copy)
    assert b.item_labels == {3: "comedy; 1970s; frankenstein", 41: "animation"} and b.item_labels_source == "metadata"


@pytest.mark.parametrize(("body", "error"), [({"items": {"99": "x"}}, "outside 1..50"), ([1, 2], "not an item-label file"),
                                             ({"source": "reviews"}, "not an item-label file")])
def test_malformed_item_labels_are_refused(copy: Path, body: object, error: str) -> None:
    _with_labels(copy, body)
    with pytest.raises(BundleError, match=error):
        load_bundle(copy)


def _hnsw_bundle(root: Path, params: dict[str, int]) -> Path:
    """The fixture bundle with an HNSW index built here (service tests never import training)."""
    from tests.service.bundle_factory import build_bundle, item_embeddings

    emb = item_embeddings(50, 16, seed=0)
    inner = faiss.IndexHNSWFlat(16, 32, faiss.METRIC_INNER_PRODUCT)
    index = faiss.IndexIDMap(inner)
    index.add_with_ids(emb[1:], np.arange(1, 51, dtype=np.int64))
    build_bundle(root, embeddings=emb, index=index,
                 index_ref={"type": "HNSW32", "params": params, "build_params": {"M": 32}})
    return root


def test_manifest_search_params_are_applied(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    root = _hnsw_bundle(tmp_path / "hnsw", {"efSearch": 77})
    assert faiss.downcast_index(faiss.read_index(str(root / "index.faiss")).index).hnsw.efSearch == 16  # FAISS's default
    with caplog.at_level("INFO", logger="service.index.bundle"):
        b = load_bundle(root)
    assert faiss.downcast_index(b.index.index).hnsw.efSearch == 77
    assert "FAISS search parameters {'efSearch': 77}" in caplog.text
    _, ids = b.index.search(np.ascontiguousarray(b.item_embeddings[[1, 21, 41]]), 1)
    assert ids[:, 0].tolist() == [1, 21, 41]


def test_unknown_search_param_is_refused(tmp_path: Path) -> None:
    root = _hnsw_bundle(tmp_path / "hnsw", {"nprobe": 8})  # an IVF parameter on an HNSW index
    with pytest.raises(BundleError, match="cannot set the manifest's search parameter nprobe=8"):
        load_bundle(root)
