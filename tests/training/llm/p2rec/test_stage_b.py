from pathlib import Path

import numpy as np

from training.data.types import ItemMeta, SequenceDataset
from training.llm.core.model import EncoderConfig, load_base
from training.llm.core.prompts import PromptConfig, catalogue_texts, item_text
from training.llm.p2rec.stage_b import PCA, fit_pca, item_embeddings


def test_pca_matches_the_centred_projection() -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(50, 6)) @ rng.normal(size=(6, 6))
    pca = fit_pca(x, 3)
    z = pca.transform(x)
    assert z.shape == (50, 3) and z.dtype == np.float32
    np.testing.assert_allclose(z.mean(0), 0, atol=1e-5)
    assert np.all(np.diff(z.var(0)) <= 1e-6)  # components ordered by variance
    assert fit_pca(x, 99).components.shape == (6, 6)  # capped at min(n, H)


def test_stage_b_embeds_every_item_including_unseen(
    tiny_llm_dir: Path, toy_dataset: SequenceDataset, tmp_path: Path
) -> None:
    model, tok = load_base(EncoderConfig(base_model=str(tiny_llm_dir), device="cpu"))
    cfg = PromptConfig()
    cold = ItemMeta("new", title="Zebra documentary never rated")
    texts = catalogue_texts(toy_dataset.items, cfg) + [item_text(41, cold, cfg)]  # item 41: no interactions
    raw, reduced, pca = item_embeddings(model, tok, texts, cfg, "mean", dim=8, batch_size=16)
    assert raw.shape == (42, 32) and reduced.shape == (42, 8) and reduced.dtype == np.float32
    assert not raw[0].any() and not reduced[0].any()
    assert np.isfinite(reduced).all()
    assert np.abs(reduced[1:41] - reduced[41]).sum(1).min() > 1e-4  # distinct from every other item
    pca.save(tmp_path / "pca.npz")
    np.testing.assert_allclose(PCA.load(tmp_path / "pca.npz").transform(raw[41:]), reduced[41:], atol=1e-5)
    # last-token pooling and batch composition do not change an item's embedding
    raw_last, _, _ = item_embeddings(model, tok, texts, cfg, "last", dim=8, batch_size=16)
    alone, _, _ = item_embeddings(model, tok, ["", texts[5], texts[6]], cfg, "last", dim=2, batch_size=1)
    np.testing.assert_allclose(alone[1], raw_last[5], atol=1e-5)
