"""`python -m training export`: write a versioned bundle the service loads (contract: recbundle/manifest.py).

    python -m training export --preset ml-100k --out bundles/

The encoder travels as a `torch.export` program (no model code needed to run it, so `service` never
imports `training`); the item table as .npy; the FAISS index type follows the catalogue size
(training/index.py).
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from recbundle import LLMRef, Manifest, write_manifest
from recbundle.manifest import EncoderRef, IndexRef
from training.config import RunConfig, stable_hash
from training.data.types import SequenceDataset
from training.index import Device, build_index, choose_index
from training.models import SequentialRecommender
from training.models.sasrec import FirstBlockTable, SASRec

log = logging.getLogger(__name__)


TABLE_BUDGET_ENV = "SEQREC_EXPORT_TABLE_MB"


def table_budget_mb() -> float:
    """The largest first-block table (`UserEncoder`) an export may add to a bundle, in MiB: 256 (ML-100K's
    is 1.6), or $SEQREC_EXPORT_TABLE_MB (0: never)."""
    return float(os.environ.get(TABLE_BUDGET_ENV, "256"))


class UserEncoder(nn.Module):
    """(B, L) left-padded ids -> (B, D) user vectors; what the service runs per request. A SASRec encoder
    carries its `FirstBlockTable` when the table fits `budget_mb` (docs/service.md, "The first block as a
    table")."""

    def __init__(self, model: SequentialRecommender, budget_mb: float = 0.0) -> None:
        super().__init__()
        self.model = model
        self.table: FirstBlockTable | None = None
        if isinstance(model, SASRec) and FirstBlockTable.nbytes(model.cfg) <= budget_mb * 2**20:
            model.eval()
            self.table = FirstBlockTable(model)

    def forward(self, seqs: torch.Tensor) -> torch.Tensor:
        if self.table is None:
            return self.model.user_vector(seqs)
        assert isinstance(self.model, SASRec)
        return self.model.user_vector(seqs, self.table)


def export_encoder(model: SequentialRecommender, path: Path, budget_mb: float | None = None) -> dict[str, Any]:
    """Write the encoder program to `path`; returns what encoder.json records about its first-block table
    (`budget_mb`: the largest allowed, by default `table_budget_mb()`). A table whose answers differ from
    the model's own (beyond float rounding) is left out."""
    model.eval()
    example = torch.zeros(2, model.max_len, dtype=torch.long)
    example[:, -3:] = torch.tensor([1, 2, 3])
    encoder = UserEncoder(model, table_budget_mb() if budget_mb is None else budget_mb).eval()
    if encoder.table is not None and not _table_agrees(model, encoder):
        log.warning("the first-block table disagrees with the model; exporting without it")
        encoder.table = None
    batch = torch.export.Dim("batch", min=1, max=4096)
    program = torch.export.export(encoder, (example,), dynamic_shapes={"seqs": {0: batch}})
    torch.export.save(program, path)
    if encoder.table is not None:
        assert isinstance(model, SASRec)
        error = encoder.table.max_error(model)
        return {"first_block_table": {"bytes": FirstBlockTable.nbytes(model.cfg), "max_error": error}}
    return {"first_block_table": None}


def _table_agrees(model: SequentialRecommender, encoder: UserEncoder, n: int = 64) -> bool:
    """The table against the first block's own layers at every (item, position) pair, and the encoder with
    it against the model without on random histories (padding, short and full) of the model's length and
    shorter."""
    assert isinstance(model, SASRec) and encoder.table is not None
    if encoder.table.max_error(model) > 1e-4:
        return False
    g = torch.Generator().manual_seed(0)
    seqs = torch.randint(0, model.n_items + 1, (n, model.max_len), generator=g)
    lengths = torch.randint(1, model.max_len + 1, (n,), generator=g)
    seqs[torch.arange(model.max_len) < (model.max_len - lengths).unsqueeze(1)] = 0  # left padding
    seqs[:, -1] = torch.randint(1, model.n_items + 1, (n,), generator=g)  # the newest event is an item
    with torch.inference_mode():
        return all(
            torch.allclose(encoder(s), model.user_vector(s), atol=1e-5, rtol=1e-4)
            for s in (seqs, seqs[:, model.max_len // 2 :])
        )


def write_catalogue(ds: SequenceDataset, path: Path) -> None:
    with path.open("w", encoding="utf-8") as f:
        for i, item in enumerate(ds.items, start=1):
            row = {"item_id": i, "raw_id": item.raw_id, "title": item.title, "description": item.description,
                   "categories": item.categories, "brand": item.brand}
            f.write(json.dumps(row, ensure_ascii=False) + "\n")


def point_current(out_root: Path, bundle_id: str) -> None:
    """Atomically repoint `<out_root>/current` (what the service loads by default) at the new bundle."""
    link = out_root / "current"
    tmp_link = out_root / ".current.tmp"
    tmp_link.unlink(missing_ok=True)
    tmp_link.symlink_to(bundle_id)
    tmp_link.replace(link)


def bundle_embeddings(model: SequentialRecommender) -> np.ndarray:
    """The (n_items + 1, dim) float32 table a bundle's index and item_embeddings.npy hold; row 0 zeros."""
    model.eval()
    emb = model.item_table().detach().float().numpy().copy()
    emb[0] = 0.0
    return emb


def export_bundle(
    cfg: RunConfig,
    ds: SequenceDataset,
    model: SequentialRecommender,
    model_name: str,
    out_root: Path,
    *,
    variant: str = "plain",
    metrics: dict[str, Any] | None = None,
    llm: LLMRef | None = None,
    extra_files: dict[str, Path] | None = None,
    index_device: Device = "cpu",
) -> Path:
    """Write `<out_root>/<bundle_id>/` and return its path. An existing bundle of the same id is replaced.
    `index_device`: where the service will search (picks the index type, training/index.py)."""
    emb = bundle_embeddings(model)
    params = asdict(model.cfg) if hasattr(model, "cfg") else {}  # type: ignore[call-overload]
    digest = stable_hash({"data": cfg.data_hash(), "model": model_name, "params": params, "variant": variant,
                          "emb": float(np.abs(emb).sum())}, n=8)
    bundle_id = f"{cfg.name}-{model_name}-{variant}-{digest}"
    root = out_root / bundle_id
    tmp = out_root / f".{bundle_id}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    write_catalogue(ds, tmp / "items.jsonl")
    serving = export_encoder(model, tmp / "encoder.pt2")
    (tmp / "encoder.json").write_text(
        json.dumps({"kind": model_name, "variant": variant, **params, **serving}, indent=1)
    )
    np.save(tmp / "item_embeddings.npy", emb)
    import faiss

    spec = choose_index(ds.n_items, emb.shape[1], index_device)
    faiss.write_index(build_index(emb, spec), str(tmp / "index.faiss"))
    for rel, src in (extra_files or {}).items():
        dest = tmp / rel
        dest.parent.mkdir(parents=True, exist_ok=True)
        (shutil.copytree if src.is_dir() else shutil.copy2)(src, dest)
    manifest = Manifest(
        bundle_id=bundle_id,
        created_at=datetime.now(UTC).isoformat(timespec="seconds"),
        dataset=ds.name,
        n_items=ds.n_items,
        encoder=EncoderRef(kind=model_name, variant=variant, max_len=model.max_len, dim=emb.shape[1]),
        index=IndexRef(type=spec.type, n_items=ds.n_items, dim=emb.shape[1], params=spec.params,
                       build_params=spec.build_params, reason=spec.reason),
        llm=llm or LLMRef(),
        metrics=metrics or {},
    )
    write_manifest(tmp, manifest)
    shutil.rmtree(root, ignore_errors=True)
    tmp.rename(root)
    point_current(out_root, bundle_id)
    log.info("bundle %s written to %s (%s index %s, %d items)", bundle_id, root, spec.type, spec.params, ds.n_items)
    return root
