"""recbundle: checksums written at export, verified at load; tampering and version skew are refused."""

import json
from pathlib import Path

import pytest

from recbundle import SCHEMA_VERSION, BundleError, Manifest, load_manifest, write_manifest
from recbundle.manifest import EncoderRef, IndexRef


def _bundle(root: Path) -> Path:
    root.mkdir()
    for name in ("items.jsonl", "encoder.pt2", "item_embeddings.npy", "index.faiss"):
        (root / name).write_bytes(name.encode() * 10)
    manifest = Manifest(
        bundle_id="b-1", created_at="2026-01-01T00:00:00+00:00", dataset="d", n_items=3,
        encoder=EncoderRef(kind="sasrec", max_len=5, dim=4), index=IndexRef(type="Flat", n_items=3, dim=4),
    )
    write_manifest(root, manifest)
    return root


def test_round_trip(tmp_path: Path) -> None:
    m = load_manifest(_bundle(tmp_path / "b"))
    assert m.schema_version == SCHEMA_VERSION
    assert set(m.files) == {"items.jsonl", "encoder.pt2", "item_embeddings.npy", "index.faiss"}


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda r: (r / "index.faiss").write_bytes(b"x" * 110), "sha256"),
        (lambda r: (r / "index.faiss").write_bytes(b"x"), "size"),
        (lambda r: (r / "encoder.pt2").unlink(), "missing"),
        (lambda r: (r / "surprise.bin").write_bytes(b"1"), "does not list"),
        (lambda r: (r / "manifest.json").write_text(
            json.dumps(json.loads((r / "manifest.json").read_text()) | {"schema_version": 99})), "schema version"),
        (lambda r: (r / "manifest.json").write_text("{"), "not valid JSON"),
    ],
)
def test_tampered_or_incompatible_bundles_are_refused(tmp_path: Path, mutate, message: str) -> None:  # type: ignore[no-untyped-def]
    root = _bundle(tmp_path / "b")
    mutate(root)
    with pytest.raises(BundleError, match=message):
        load_manifest(root)


def test_index_search_params_round_trip(tmp_path: Path) -> None:
    root = _bundle(tmp_path / "b")
    m = load_manifest(root)
    ref = IndexRef(type="HNSW32", n_items=3, dim=4, params={"efSearch": 128},
                   build_params={"M": 32, "efConstruction": 40}, reason="test")
    write_manifest(root, m.model_copy(update={"index": ref}))
    assert load_manifest(root).index == ref


def test_manifests_written_before_index_params_still_load(tmp_path: Path) -> None:
    root = _bundle(tmp_path / "b")
    raw = json.loads((root / "manifest.json").read_text())
    for key in ("params", "build_params", "reason"):
        del raw["index"][key]
    (root / "manifest.json").write_text(json.dumps(raw))
    index = load_manifest(root).index
    assert (index.type, index.params, index.build_params, index.reason) == ("Flat", {}, {}, None)
