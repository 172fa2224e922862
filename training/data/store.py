"""Save / load a prepared `SequenceDataset` so later stages skip reading and preprocessing.

Layout of a dataset directory (no pickles, so loading never executes code):
  sequences.npz   items, timestamps: concatenated int64 arrays; offsets: (U + 1,) int64, user u is
                  items[offsets[u]:offsets[u + 1]]
  users.json      raw user id per dense user index
  items.jsonl     one ItemMeta per line, line i is dense item id i + 1
  reviews.jsonl   {"user", "item", "review", "summary"} per reviewed event
  stats.json      {"format_version", "name", "stats", "config"}
"""

from __future__ import annotations

import dataclasses
import json
import logging
from pathlib import Path
from typing import Any

import numpy as np

from training.data.download import resolve_dataset_dir
from training.data.errors import DataError
from training.data.lines import DEFAULT_MAX_BAD_FRACTION
from training.data.preprocess import preprocess
from training.data.registry import read_dataset
from training.data.types import ItemMeta, SequenceDataset

logger = logging.getLogger(__name__)

FORMAT_VERSION = 1
_FILES = ("sequences.npz", "users.json", "items.jsonl", "reviews.jsonl", "stats.json")


def _write_jsonl(path: Path, rows: list[dict[str, Any]]) -> None:
    with path.open("w", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")


def _read_jsonl(path: Path) -> list[dict[str, Any]]:
    with path.open(encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def save_dataset(ds: SequenceDataset, out_dir: Path, config: dict[str, Any] | None = None) -> Path:
    """Write `ds` to `out_dir` (created); `config` (e.g. the preprocess arguments) goes to stats.json."""
    out_dir.mkdir(parents=True, exist_ok=True)
    lengths = np.asarray([len(s) for s in ds.sequences], dtype=np.int64)
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    empty = np.empty(0, dtype=np.int64)
    np.savez(
        out_dir / "sequences.npz",
        items=np.concatenate(ds.sequences).astype(np.int64) if ds.sequences else empty,
        timestamps=np.concatenate(ds.timestamps).astype(np.int64) if ds.timestamps else empty,
        offsets=offsets,
    )
    (out_dir / "users.json").write_text(json.dumps(ds.user_ids, ensure_ascii=False), encoding="utf-8")
    _write_jsonl(out_dir / "items.jsonl", [dataclasses.asdict(m) for m in ds.items])
    reviews = [
        {"user": u, "item": i, "review": r, "summary": s} for (u, i), (r, s) in sorted(ds.reviews.items())
    ]
    _write_jsonl(out_dir / "reviews.jsonl", reviews)
    meta = {"format_version": FORMAT_VERSION, "name": ds.name, "stats": ds.stats, "config": config or {}}
    (out_dir / "stats.json").write_text(json.dumps(meta, indent=2, sort_keys=True), encoding="utf-8")
    logger.info("saved %s (%d users, %d items) to %s", ds.name, ds.n_users, ds.n_items, out_dir)
    return out_dir


def load_dataset(folder: Path) -> SequenceDataset:
    """Read a directory written by `save_dataset`; a missing file or another format version raises DataError."""
    if missing := [f for f in _FILES if not (folder / f).is_file()]:
        raise DataError(f"{folder}: not a prepared dataset (missing {missing})")
    meta = json.loads((folder / "stats.json").read_text(encoding="utf-8"))
    if meta.get("format_version") != FORMAT_VERSION:
        raise DataError(
            f"{folder}: format_version {meta.get('format_version')} != {FORMAT_VERSION}; prepare it again"
        )
    with np.load(folder / "sequences.npz", allow_pickle=False) as z:
        items, timestamps, offsets = z["items"], z["timestamps"], z["offsets"]
    bounds = list(zip(offsets[:-1], offsets[1:], strict=True))
    return SequenceDataset(
        name=meta["name"],
        user_ids=json.loads((folder / "users.json").read_text(encoding="utf-8")),
        items=[ItemMeta(**row) for row in _read_jsonl(folder / "items.jsonl")],
        sequences=[items[a:b].copy() for a, b in bounds],
        timestamps=[timestamps[a:b].copy() for a, b in bounds],
        reviews={
            (r["user"], r["item"]): (r["review"], r["summary"]) for r in _read_jsonl(folder / "reviews.jsonl")
        },
        stats=meta["stats"],
    )


def prepare(
    name: str,
    data_dir: Path | None,
    cache_dir: Path,
    out_dir: Path,
    *,
    max_bad_fraction: float = DEFAULT_MAX_BAD_FRACTION,
    **preprocess_kwargs: Any,
) -> SequenceDataset:
    """Resolve (shared copy / `data_dir` / download), read, preprocess and save dataset `name` to `out_dir`."""
    folder = resolve_dataset_dir(name, data_dir, cache_dir)
    raw = read_dataset(name, folder, max_bad_fraction=max_bad_fraction)
    if raw.issues.total:
        logger.warning("%s read issues: %s; samples %s", name, raw.issues.counts, raw.issues.samples)
    ds = preprocess(raw, **preprocess_kwargs)
    config = {
        "dataset": name,
        "source": str(folder),
        "max_bad_fraction": max_bad_fraction,
        **preprocess_kwargs,
    }
    save_dataset(ds, out_dir, config=config)
    logger.info("%s prepared: %s", name, ds.stats)
    return ds
