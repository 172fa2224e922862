"""Which FAISS index a bundle gets, by catalogue size and serving device, and how it is built.

`choose_index` is pure (sizes in, a spec out) so the choice is tested as a table and recorded in the
manifest (`IndexRef.type/params/build_params/reason`); `build_index` turns a spec into a FAISS index whose
ids are the dense item ids. The figures behind the thresholds are in docs/results/catalogue-scale.md
(`python scripts/bench_catalogue.py`): synthetic clustered catalogues, dim 64, user vectors = mean of a
20-50 item history, recall@10 against exact search over 1,000 users.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

Device = Literal["cpu", "gpu"]

EXACT_INDEX_MAX_ITEMS = 50_000  # exact inner-product search is both fastest and exact below this size
HNSW_M = 32
# 100k items: efConstruction 40 (FAISS's default) built in 17 s and reached recall@10 0.947 / 0.955 at
# efSearch 64 / 128; 100 built in 23 s and reached 0.973 / 0.985 (a better graph for inner products,
# which are not a metric). The service asks for >= k * fanout + history candidates, and FAISS searches
# with max(efSearch, k).
HNSW_EF_CONSTRUCTION = 100
# recall@10 at 1M items: 0.946 / 0.959 / 0.972 / 0.986 at efSearch 32 / 64 / 128 / 256 (100k: 0.985 at 128);
# 128 keeps a margin for real embeddings, at ~0.5 ms per query on one core (docs/results/catalogue-scale.md)
HNSW_EF_SEARCH = 128
# The GPU is shared with the LLM engine (SEQREC_VLLM_GPU_MEMORY_FRACTION: 60 % by default), FAISS's scratch
# memory and the encoder: IVF-Flat keeps every vector in float32 while they fit this budget (2 GiB fits
# beside them on a 16 GB card), then IVF-PQ stores m bytes per vector.
GPU_INDEX_BUDGET_BYTES = 2 << 30
# IVF-Flat recall@10 measured on the CPU (the GPU runs the same search): nprobe 64 gave 0.979 at 100k items
# (nlist 1024) but 0.954 at 1M (nlist 4096), too thin a margin; 128 gave 0.998. A GPU scans 3 % of 1M
# vectors per query in well under a millisecond.
IVF_NPROBE = 128
# On paper (10M items, nlist 16384): recall at a fixed nprobe falls as nlist grows, and PQ loses more.
IVFPQ_NPROBE = 256


@dataclass(frozen=True)
class IndexSpec:
    type: str  # FAISS factory string, as recorded in the manifest
    params: dict[str, int | float] = field(default_factory=dict)  # search time, ParameterSpace names
    build_params: dict[str, int | float] = field(default_factory=dict)
    reason: str = ""


def ivf_nlist(n_items: int) -> int:
    """~4 sqrt(n) lists (FAISS's guideline is 4-16 sqrt(n)), as a power of two in [256, 65536]."""
    return int(min(65536, max(256, 2 ** round(math.log2(4 * math.sqrt(n_items))))))


def choose_index(
    n_items: int, dim: int, device: Device = "cpu", gpu_budget_bytes: int = GPU_INDEX_BUDGET_BYTES
) -> IndexSpec:
    """Flat up to 50k items; above, HNSW on CPUs (FAISS's GPU code has no HNSW) and IVF on GPUs, with
    product quantisation once float32 vectors would not fit `gpu_budget_bytes`."""
    if n_items <= EXACT_INDEX_MAX_ITEMS:
        return IndexSpec("Flat", reason=f"{n_items} <= {EXACT_INDEX_MAX_ITEMS} items: exact search")
    if device == "cpu":
        return IndexSpec(
            f"HNSW{HNSW_M}",
            params={"efSearch": HNSW_EF_SEARCH},
            build_params={"M": HNSW_M, "efConstruction": HNSW_EF_CONSTRUCTION},
            reason=f"{n_items} > {EXACT_INDEX_MAX_ITEMS} items on CPU: graph search",
        )
    nlist = ivf_nlist(n_items)
    flat_bytes = n_items * dim * 4
    if flat_bytes <= gpu_budget_bytes:
        return IndexSpec(
            f"IVF{nlist},Flat",
            params={"nprobe": IVF_NPROBE},
            build_params={"nlist": nlist},
            reason=f"{n_items} items on GPU: float32 vectors ({flat_bytes >> 20} MiB) fit the index budget",
        )
    m = dim // 2 if dim % 2 == 0 else dim  # 2 dims per 8-bit sub-quantiser: m bytes per vector
    return IndexSpec(
        f"IVF{nlist},PQ{m}",
        params={"nprobe": IVFPQ_NPROBE},
        build_params={"nlist": nlist, "m": m, "nbits": 8},
        reason=(
            f"{n_items} items on GPU: float32 vectors ({flat_bytes >> 20} MiB) exceed the index budget "
            f"({gpu_budget_bytes >> 20} MiB); PQ stores {m} bytes per vector"
        ),
    )


def build_index(embeddings: np.ndarray, spec: IndexSpec, seed: int = 0) -> Any:
    """Inner-product index over rows 1..n (row 0 = padding), FAISS ids = dense item ids, search params set."""
    import faiss

    vectors = np.ascontiguousarray(embeddings[1:], dtype=np.float32)
    n, dim = vectors.shape
    ids = np.arange(1, n + 1, dtype=np.int64)
    index: Any
    if spec.type == "Flat":
        index = faiss.IndexIDMap2(faiss.IndexFlatIP(dim))
    elif spec.type.startswith("HNSW"):
        inner = faiss.IndexHNSWFlat(dim, int(spec.type[4:] or HNSW_M), faiss.METRIC_INNER_PRODUCT)
        inner.hnsw.efConstruction = int(spec.build_params.get("efConstruction", HNSW_EF_CONSTRUCTION))
        index = faiss.IndexIDMap(inner)  # no reverse map: the service never reconstructs by id
    elif spec.type.startswith("IVF"):
        index = faiss.index_factory(dim, spec.type, faiss.METRIC_INNER_PRODUCT)  # stores ids itself
        nlist = int(spec.build_params.get("nlist", ivf_nlist(n)))
        # 40 points per centroid (FAISS warns below 39) and 10 k-means iterations (FAISS: 25): at 1M items
        # the default training (256 per centroid) alone would take ~10x longer on 2 CPU cores
        sample = np.random.default_rng(seed).permutation(n)[: 40 * nlist]
        faiss.extract_index_ivf(index).cp.niter = 10
        index.train(vectors[np.sort(sample)])
    else:
        raise ValueError(f"unsupported index type {spec.type!r}")
    index.add_with_ids(vectors, ids)
    set_search_params(index, spec.params)
    return index


def set_search_params(index: Any, params: dict[str, int | float]) -> None:
    import faiss

    space = faiss.ParameterSpace()
    for name, value in params.items():
        space.set_index_parameter(index, name, value)
