"""Open a bundle: verify the manifest, then load the catalogue, the exported encoder and the FAISS index.

Runs on a FAISS GPU index when the installed faiss has GPUs (`faiss.get_num_gpus() > 0`), on CPU otherwise.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import faiss
import numpy as np
import torch

from recbundle import BundleError, Manifest, load_manifest
from service.index.catalogue import Catalogue
from service.index.fast_encoder import TracedEncoder

logger = logging.getLogger(__name__)


@dataclass
class Bundle:
    root: Path
    manifest: Manifest
    catalogue: Catalogue
    encoder: torch.nn.Module  # (B, max_len) int64 left-padded ids -> (B, dim) float32
    index: Any  # faiss.Index (CPU or GPU)
    item_embeddings: np.ndarray  # (n_items + 1, dim) float32, memory-mapped; row 0 = padding
    on_gpu: bool
    item_labels: dict[int, str] = field(default_factory=dict)  # ReLRec's item pseudo-labels (llm.item_labels)
    item_labels_source: str | None = None  # "reviews" or "metadata" (no reviews: genres, era, title words)

    @property
    def bundle_id(self) -> str:
        return self.manifest.bundle_id

    @property
    def max_len(self) -> int:
        return self.manifest.encoder.max_len

    @property
    def n_items(self) -> int:
        return self.manifest.n_items


def _load_encoder(path: Path, max_len: int, dim: int) -> torch.nn.Module:
    try:
        module = torch.export.load(str(path)).module()
    except Exception as e:  # torch raises many types for a bad archive
        raise BundleError(f"{path.name} is not a loadable torch.export program: {e}") from e
    module.requires_grad_(False)  # serving only: outputs must not carry autograd state
    probe = torch.zeros((1, max_len), dtype=torch.int64)
    probe[0, -1] = 1
    with torch.inference_mode():
        out = module(probe)
    if not isinstance(out, torch.Tensor) or tuple(out.shape) != (1, dim):
        shape = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise BundleError(
            f"{path.name} returns {shape} for a (1, {max_len}) input; the manifest says (1, {dim})"
        )
    return TracedEncoder(module, max_len)


def _set_search_params(index: Any, params: Mapping[str, int | float], name: str) -> None:
    """The manifest's search-time parameters (`IndexRef.params`: efSearch for HNSW, nprobe for IVF), set
    through FAISS's ParameterSpace, which reaches through IDMap wrappers. Set on the CPU index before any
    GPU copy: the GPU clone of an IVF index takes its nprobe."""
    space = faiss.ParameterSpace()
    for key, value in params.items():
        try:
            space.set_index_parameter(index, key, value)
        except RuntimeError as e:
            raise BundleError(f"{name}: cannot set the manifest's search parameter {key}={value}: {e}") from e
    logger.info("FAISS search parameters %s", dict(params) or "none (exact search)")


def _load_index(
    path: Path, n_items: int, dim: int, params: Mapping[str, int | float] | None = None
) -> tuple[Any, bool]:
    index = faiss.read_index(str(path))
    if index.ntotal != n_items or index.d != dim:
        raise BundleError(
            f"{path.name} holds {index.ntotal} vectors of dim {index.d}; the manifest says {n_items} x {dim}"
        )
    if index.metric_type != faiss.METRIC_INNER_PRODUCT:
        raise BundleError(f"{path.name} is not an inner-product index (metric {index.metric_type})")
    _set_search_params(index, params or {}, path.name)
    get_num_gpus = getattr(faiss, "get_num_gpus", lambda: 0)
    if get_num_gpus() > 0:
        try:
            gpu_index = faiss.index_cpu_to_all_gpus(index)
        except RuntimeError as e:  # e.g. HNSW, which FAISS's GPU code does not implement
            logger.warning("FAISS cannot move this index to the GPU (%s); searching on the CPU", e)
            return index, False
        logger.info("FAISS index on %d GPU(s)", get_num_gpus())
        return gpu_index, True
    return index, False


def _load_item_labels(path: Path, n_items: int) -> tuple[dict[int, str], str | None]:
    """{"source": ..., "items": {dense id: label}} -> (labels, source); BundleError on a malformed file."""
    try:
        body = json.loads(path.read_text())
        labels = {int(k): str(v) for k, v in body["items"].items()}
        source = body.get("source")
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as e:
        raise BundleError(f"{path.name} is not an item-label file ({{source, items}}): {e}") from e
    bad = [i for i in labels if not 1 <= i <= n_items]
    if bad:
        raise BundleError(f"{path.name} labels item ids outside 1..{n_items}: {bad[:5]}")
    return labels, source


def load_bundle(root: Path) -> Bundle:
    """Raises BundleError naming the file and the problem when anything does not match the manifest."""
    root = Path(root)
    manifest = load_manifest(root, verify=True)
    catalogue = Catalogue.from_jsonl(root / manifest.catalogue_path)
    if len(catalogue) != manifest.n_items:
        raise BundleError(
            f"{manifest.catalogue_path} has {len(catalogue)} items; the manifest says {manifest.n_items}"
        )
    emb = np.load(root / manifest.index.embeddings_path, mmap_mode="r")
    if emb.shape != (manifest.n_items + 1, manifest.index.dim):
        raise BundleError(
            f"{manifest.index.embeddings_path} has shape {emb.shape}; "
            f"the manifest says ({manifest.n_items + 1}, {manifest.index.dim})"
        )
    if manifest.encoder.dim != manifest.index.dim:
        raise BundleError(f"encoder dim {manifest.encoder.dim} != index dim {manifest.index.dim}")
    encoder = _load_encoder(root / manifest.encoder.path, manifest.encoder.max_len, manifest.encoder.dim)
    index, on_gpu = _load_index(root / manifest.index.path, manifest.n_items, manifest.index.dim, manifest.index.params)
    labels: dict[int, str] = {}
    source: str | None = None
    if manifest.llm.item_labels:
        labels, source = _load_item_labels(root / manifest.llm.item_labels, manifest.n_items)
    logger.info(
        "loaded bundle %s: %d items, index %s, %d item labels",
        manifest.bundle_id, manifest.n_items, manifest.index.type, len(labels),
    )  # fmt: skip
    return Bundle(root, manifest, catalogue, encoder, index, emb, on_gpu, labels, source)
