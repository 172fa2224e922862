"""Resumable stage outputs: each stage writes into `<root>/<stage>/<key>/`, where the key hashes the
stage's config and the fingerprints of its inputs. A finished folder holds a `_done.json` marker; a rerun
with the same key loads it instead of recomputing, and a crash mid-stage leaves only a `.partial` folder.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, is_dataclass
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from training.train import distributed

log = logging.getLogger(__name__)
T = TypeVar("T")
DONE = "_done.json"


def fingerprint(*parts: Any) -> str:
    """A short stable hash of configs (dataclasses, dicts, lists, str/int) and numpy arrays."""
    h = hashlib.sha256()
    for part in parts:
        if isinstance(part, np.ndarray):
            h.update(f"nd{part.dtype}{part.shape}".encode())
            h.update(np.ascontiguousarray(part).tobytes())
        elif isinstance(part, list | tuple) and part and isinstance(part[0], np.ndarray):
            for a in part:
                h.update(fingerprint(a).encode())
        else:
            obj = asdict(part) if is_dataclass(part) and not isinstance(part, type) else part
            h.update(json.dumps(obj, sort_keys=True, default=str).encode())
        h.update(b"|")
    return h.hexdigest()[:16]


def stage_dir(out_root: Path, stage: str, config: Any, inputs_fingerprint: str) -> Path:
    return out_root / stage / fingerprint(config, inputs_fingerprint)


def cached(
    stage: str,
    config: Any,
    inputs_fingerprint: str,
    out_root: Path,
    compute: Callable[[Path], None],
    load: Callable[[Path], T],
) -> tuple[T, Path]:
    """Run `compute(folder)` (which writes the stage's files) unless a finished folder for this key
    exists; then `load(folder)`. Returns (loaded value, folder).

    Under torchrun every rank runs `compute` (its training and scoring are split across the ranks); rank 0
    writes the folder, the others write into a scratch folder that is thrown away, then read rank 0's.
    Whether the stage is cached is rank 0's decision, so no rank skips work the others do."""
    folder = stage_dir(out_root, stage, config, inputs_fingerprint)
    world = distributed.current()
    if distributed.on_main((folder / DONE).is_file):
        log.info("%s: cached at %s", stage, folder)
        return load(folder), folder
    if not world.is_main:
        with tempfile.TemporaryDirectory(prefix=f"{stage}-rank{world.rank}-") as scratch:
            compute(Path(scratch))
        world.barrier()  # rank 0 has renamed its finished folder
        return load(folder), folder
    partial = folder.with_name(folder.name + ".partial")
    if partial.exists():
        shutil.rmtree(partial)
    partial.mkdir(parents=True)
    start = time.perf_counter()
    compute(partial)
    meta = {
        "stage": stage,
        "inputs": inputs_fingerprint,
        "wall_s": time.perf_counter() - start,
        "config": asdict(config) if is_dataclass(config) and not isinstance(config, type) else config,
    }
    (partial / DONE).write_text(json.dumps(meta, indent=1, default=str))
    if folder.exists():
        shutil.rmtree(folder)
    partial.rename(folder)
    log.info("%s: computed in %.1f s -> %s", stage, meta["wall_s"], folder)
    world.barrier()
    return load(folder), folder


def fingerprint_of(folder: Path) -> str:
    """A finished stage's identity, to feed into the next stage's key (its folder name is its hash)."""
    return f"{folder.parent.name}/{folder.name}"
