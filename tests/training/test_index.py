"""training/index.py: the index chosen per catalogue size and device, and the indexes it builds."""

from __future__ import annotations

import faiss
import numpy as np
import pytest

from training.index import IndexSpec, build_index, choose_index, ivf_nlist


@pytest.mark.parametrize(
    ("n_items", "device", "type_", "params"),
    [
        (1_682, "cpu", "Flat", {}),
        (50_000, "cpu", "Flat", {}),
        (50_000, "gpu", "Flat", {}),
        (50_001, "cpu", "HNSW32", {"efSearch": 128}),
        (1_000_000, "cpu", "HNSW32", {"efSearch": 128}),
        (10_000_000, "cpu", "HNSW32", {"efSearch": 128}),
        (100_000, "gpu", "IVF1024,Flat", {"nprobe": 128}),
        (1_000_000, "gpu", "IVF4096,Flat", {"nprobe": 128}),
        (8_000_000, "gpu", "IVF8192,Flat", {"nprobe": 128}),  # 1,953 MiB of float32: within the 2 GiB budget
        (10_000_000, "gpu", "IVF16384,PQ32", {"nprobe": 256}),  # 2,441 MiB: product-quantised
    ],
)
def test_index_by_catalogue_size(n_items: int, device: str, type_: str, params: dict[str, int]) -> None:
    spec = choose_index(n_items, 64, device)  # type: ignore[arg-type]
    assert (spec.type, spec.params) == (type_, params)
    assert spec.reason


def test_gpu_budget_decides_product_quantisation() -> None:
    assert choose_index(1_000_000, 64, "gpu", gpu_budget_bytes=100 << 20).type == "IVF4096,PQ32"
    spec = choose_index(1_000_000, 64, "cpu")
    assert spec.build_params == {"M": 32, "efConstruction": 100}


@pytest.mark.parametrize(("n", "nlist"), [(1_000, 256), (100_000, 1024), (1_000_000, 4096), (10**8, 32768), (10**10, 65536)])
def test_ivf_nlist(n: int, nlist: int) -> None:
    assert ivf_nlist(n) == nlist


@pytest.mark.parametrize(
    ("spec", "inner"),
    [
        (IndexSpec("Flat"), faiss.IndexFlatIP),
        (IndexSpec("HNSW32", {"efSearch": 77}, {"efConstruction": 40}), faiss.IndexHNSWFlat),
        (IndexSpec("IVF16,Flat", {"nprobe": 16}, {"nlist": 16}), faiss.IndexIVFFlat),
    ],
)
def test_built_index_answers_with_dense_ids(spec: IndexSpec, inner: type) -> None:
    rng = np.random.default_rng(0)
    emb = rng.normal(size=(2_001, 8)).astype(np.float32)
    emb[0] = 0.0
    index = build_index(emb, spec)
    assert (index.ntotal, index.metric_type) == (2_000, faiss.METRIC_INNER_PRODUCT)
    base = faiss.downcast_index(index.index) if hasattr(index, "id_map") else index
    assert isinstance(base, inner)
    if "efSearch" in spec.params:
        assert base.hnsw.efSearch == 77
    if "nprobe" in spec.params:
        assert base.nprobe == 16  # all lists: exact
    queries = emb[1:51]
    exact = (queries @ emb[1:].T).argsort(axis=1)[:, -1] + 1  # dense id of each query's best item
    assert (index.search(queries, 1)[1][:, 0] == exact).mean() >= 0.95
