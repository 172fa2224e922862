"""Cold start through the text (issue 5, item 5): an item with no training interaction still gets a row in
the exported item table and FAISS index, computed from its title by the stage (a)-tuned LLM (stage b) and
the SR model's adapter, so a user vector near it retrieves it. The item is made cold by deleting it from
every training sequence and history before the `p2rec-tiny` chain runs (teacher, LLM, SR models)."""

from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pytest
import torch

from training import pipeline
from training.config import RunConfig, load_config
from training.data.types import SequenceDataset, Split
from training.llm.p2rec import chain as p2rec_pipeline

SHARED = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "ml-100k"
# no skip for a missing SmolLM2 tokenizer: random_tiny converts it on demand (a skip hid these tests on new machines)
pytestmark = pytest.mark.skipif(not SHARED.is_dir(), reason="needs ../shared/data/ml-100k")


@dataclass
class ColdRun:
    cfg: RunConfig
    ds: SequenceDataset
    split: Split
    run: p2rec_pipeline.P2RecRun
    bundle: Path
    item: int


def _without(histories: list[np.ndarray], item: int) -> list[np.ndarray]:
    return [h[h != item] for h in histories]


@pytest.fixture(scope="module")
def cold(tmp_path_factory: pytest.TempPathFactory) -> ColdRun:
    out = tmp_path_factory.mktemp("p2rec-cold")
    cfg = load_config("p2rec-tiny", {"output_dir": str(out)})
    ds, split = pipeline.prepare_stage(cfg)
    counts = np.bincount(np.concatenate(split.train), minlength=split.n_items + 1)
    item = int(counts.argmax())  # the most watched item: without the text path it would lose everything
    split = replace(
        split,
        train=_without(split.train, item),
        valid_history=_without(split.valid_history, item),
        test_history=_without(split.test_history, item),
    )
    assert not any((s == item).any() for s in split.train)
    run = p2rec_pipeline.run_chain(cfg, ds, split, "pytest")
    bundle = p2rec_pipeline.export_variant(cfg, ds, split, run, out / "bundles", "sasrec_adapter")
    return ColdRun(cfg, ds, split, run, bundle, item)


def _assert_distinct_nonzero_row(table: np.ndarray, item: int, what: str) -> None:
    row = table[item]
    assert np.linalg.norm(row) > 0.1 * np.median(np.linalg.norm(table[1:], axis=1)), f"{what}: (near) zero row"
    others = np.delete(table[1:], item - 1, axis=0)
    assert np.linalg.norm(others - row, axis=1).min() > 1e-3 * np.linalg.norm(row), f"{what}: duplicate row"


def test_the_cold_item_has_a_distinct_nonzero_row_in_the_bundle(cold: ColdRun) -> None:
    emb = np.load(cold.bundle / "item_embeddings.npy")
    assert emb.shape[0] == cold.ds.n_items + 1  # every catalogue item, trained on or not
    _assert_distinct_nonzero_row(emb, cold.item, "bundle item table")
    # and upstream: a zero augmented row would still come out of the adapter as its (non-zero) bias
    _assert_distinct_nonzero_row(cold.run.aug.numpy(), cold.item, "augmented table")


def test_the_row_comes_from_the_item_text(cold: ColdRun) -> None:
    """Re-embed the title with the bundle's own stage (a) adapter and PCA: it gives the table row the SR
    adapter was trained on, and the bundle row is that row through the trained adapter."""
    from recbundle import load_manifest
    from training.llm.core.prompts import catalogue_texts
    from training.llm.p2rec import PCA, encode_texts, load_stage_a, merge_lora, p2rec_config

    p2 = p2rec_config(cold.cfg)
    assert p2 is not None
    model, _, tok = load_stage_a(cold.bundle / "p2rec" / "stage_a", p2.encoder())
    title = catalogue_texts(cold.ds.items, p2.prompt())[cold.item]
    state = encode_texts(merge_lora(model), tok, [title], p2.prompt(), p2.pooling)
    from_text = PCA.load(cold.bundle / "p2rec" / "pca.npz").transform(state)[0]
    np.testing.assert_allclose(from_text, cold.run.aug[cold.item].numpy(), rtol=1e-3, atol=1e-4)

    seed = load_manifest(cold.bundle).metrics["seed"]
    spec = cold.cfg.model_spec("sasrec_adapter")
    sr = pipeline.load_trained(cold.cfg, spec, seed, cold.split.n_items, cold.run.aug)
    with torch.no_grad():
        expected = sr.item_table()[cold.item].numpy()
    np.testing.assert_allclose(np.load(cold.bundle / "item_embeddings.npy")[cold.item], expected, atol=1e-5)


def test_a_user_vector_near_the_cold_item_retrieves_it(cold: ColdRun) -> None:
    import faiss

    emb = np.load(cold.bundle / "item_embeddings.npy")
    row = emb[cold.item]
    noise = np.random.default_rng(0).normal(size=row.shape).astype(np.float32)
    query = row + 0.05 * np.linalg.norm(row) * noise / np.linalg.norm(noise)
    index = faiss.read_index(str(cold.bundle / "index.faiss"))
    scores, ids = index.search(query[None], 10)
    assert cold.item in ids[0].tolist(), f"top-10 {ids[0].tolist()} misses cold item {cold.item}"
    np.testing.assert_allclose(scores[0], emb[ids[0]] @ query, rtol=1e-4, atol=1e-5)
