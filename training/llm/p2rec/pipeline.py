"""P2Rec end to end: latent categories -> user targets -> stage (a) user-level LoRA tuning -> stage (b)
item augmentation (TSLRec/P2Rec, arXiv 2406.00333). Each step is cached (see `cache.py`), so a rerun
resumes after the last finished step. The CLI calls `run_p2rec`; the SR side then trains `SASRecAdapter` or
`SASRecInit` (training/models/sasrec_aug.py) on the returned `aug_embeddings.npy`.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from training.data.types import SequenceDataset, Split
from training.llm.core.cache import cached, fingerprint, fingerprint_of
from training.llm.core.model import load_base
from training.llm.core.prompts import catalogue_texts, user_prompt_ids
from training.llm.p2rec.categories import (
    ScoreFn,
    balance,
    compare_targets,
    counts_targets,
    fit_categories,
    sweep_k,
    teacher_targets,
)
from training.llm.p2rec.config import P2RecConfig
from training.llm.p2rec.sft_baseline import instance_level_sft_epoch_time
from training.llm.p2rec.stage_a import load_stage_a, merge_lora, save_stage_a, train_stage_a
from training.llm.p2rec.stage_b import item_embeddings

log = logging.getLogger(__name__)


@dataclass
class P2RecResult:
    aug_path: Path  # (n_items + 1, aug_dim) float32, row 0 zero: the SR models' input
    raw_path: Path  # (n_items + 1, H) float32 pooled states before PCA
    pca_path: Path  # npz: mean, components, evr (to embed new items later)
    adapter_dir: Path  # stage (a) folder: adapter/ + head.pt + stage_a.json
    categories_path: Path  # category_of.npy
    report: dict[str, Any]


def _users(split: Split, max_users: int | None, seed: int) -> np.ndarray:
    users = np.array([u for u, s in enumerate(split.train) if len(s)], dtype=np.int64)
    if max_users is not None and max_users < len(users):
        users = np.sort(np.random.default_rng(seed).choice(users, size=max_users, replace=False))
    return users


def _categories_stage(cfg: P2RecConfig, teacher_emb: np.ndarray, root: Path) -> tuple[dict[str, Any], Path]:
    def compute(d: Path) -> None:
        cats = fit_categories(teacher_emb, cfg.categories())
        np.save(d / "category_of.npy", cats.category_of)
        np.save(d / "centroids.npy", cats.centroids)
        n = teacher_emb.shape[0] - 1
        sweep = sweep_k(teacher_emb, [k for k in cfg.sweep_ks if k <= n], cfg.categories())
        info = {"k": cats.k, "inertia": cats.inertia, **balance(cats.category_of, cats.k), "sweep": sweep}
        (d / "categories.json").write_text(json.dumps(info, indent=1))

    return cached(
        "categories",
        cfg.categories(),
        fingerprint(teacher_emb),
        root,
        compute,
        lambda d: json.loads((d / "categories.json").read_text()),
    )


def _targets_stage(
    cfg: P2RecConfig, split: Split, cat_dir: Path, teacher_fp: str, score_fn: ScoreFn | None, root: Path
) -> tuple[dict[str, Any], Path]:
    if cfg.target == "teacher" and score_fn is None:
        raise ValueError("target='teacher' needs the teacher's score function (teacher_score_fn)")
    key = {
        "target": cfg.target,
        "temperature": cfg.teacher_temperature,
        "mask_history": cfg.teacher_mask_history,
        "has_teacher": score_fn is not None,
    }

    def compute(d: Path) -> None:
        category_of = np.load(cat_dir / "category_of.npy")
        counts = counts_targets(split.train, category_of, cfg.k)
        info: dict[str, Any] = {"target": cfg.target}
        chosen = counts
        if score_fn is not None:
            teacher = teacher_targets(
                split.train, category_of, cfg.k, score_fn, cfg.teacher_temperature, cfg.teacher_mask_history
            )
            np.save(d / "teacher_targets.npy", teacher)
            info["counts_vs_teacher"] = compare_targets(counts, teacher)
            chosen = teacher if cfg.target == "teacher" else counts
        np.save(d / "counts_targets.npy", counts)
        np.save(d / "targets.npy", chosen.astype(np.float32))
        (d / "targets.json").write_text(json.dumps(info, indent=1))

    inputs = fingerprint(fingerprint_of(cat_dir), teacher_fp, list(split.train))
    return cached(
        "targets", key, inputs, root, compute, lambda d: json.loads((d / "targets.json").read_text())
    )


def _stage_a(
    cfg: P2RecConfig, split: Split, texts: Sequence[str], tgt_dir: Path, root: Path
) -> tuple[dict[str, Any], Path]:
    key = {
        "enc": asdict(cfg.encoder()) | {"device": None},
        "lora": asdict(cfg.lora()),
        "prompt": asdict(cfg.prompt()),
        "train": asdict(cfg.stage_a()),
        "max_users": cfg.max_users,
    }

    def compute(d: Path) -> None:
        targets = np.load(tgt_dir / "targets.npy")
        model, tok = load_base(cfg.encoder())
        users = _users(split, cfg.max_users, cfg.seed)
        prompts = [user_prompt_ids(split.train[u], texts, cfg.prompt(), tok) for u in users]
        res = train_stage_a(
            model, tok.pad_token_id, prompts, targets[users], cfg.stage_a(), cfg.lora(), cfg.pooling
        )
        report = res.report() | {
            "n_users": len(users),
            "mean_prompt_tokens": float(np.mean([len(p) for p in prompts])),
        }
        save_stage_a(res.model, res.head, d, report)

    inputs = fingerprint(fingerprint_of(tgt_dir), list(texts), list(split.train))
    return cached(
        "stage_a", key, inputs, root, compute, lambda d: json.loads((d / "stage_a.json").read_text())
    )


def _sft_timing(cfg: P2RecConfig, split: Split, texts: Sequence[str], root: Path) -> dict[str, Any]:
    key = {
        "enc": asdict(cfg.encoder()) | {"device": None},
        "lora": asdict(cfg.lora()),
        "prompt": asdict(cfg.prompt()),
        "n": cfg.sft_timing_examples,
        "bs": cfg.batch_size,
        "seed": cfg.seed,
    }

    def compute(d: Path) -> None:
        model, tok = load_base(cfg.encoder())
        t = instance_level_sft_epoch_time(
            model,
            tok,
            split.train,
            texts,
            cfg.prompt(),
            cfg.sft_timing_examples,
            cfg.batch_size,
            cfg.lr,
            cfg.lora(),
            cfg.seed,
        )
        (d / "sft_timing.json").write_text(json.dumps(asdict(t), indent=1))

    inputs = fingerprint(list(texts), list(split.train))
    value, _ = cached(
        "sft_timing", key, inputs, root, compute, lambda d: json.loads((d / "sft_timing.json").read_text())
    )
    return value


def _stage_b(cfg: P2RecConfig, texts: Sequence[str], a_dir: Path, root: Path) -> tuple[dict[str, Any], Path]:
    key = {
        "aug_dim": cfg.aug_dim,
        "pooling": cfg.pooling,
        "prompt": asdict(cfg.prompt()),
        "merge": cfg.merge_for_inference,
    }

    def compute(d: Path) -> None:
        model, _, tok = load_stage_a(a_dir, cfg.encoder())
        if cfg.merge_for_inference:
            model = merge_lora(model)
        start = time.perf_counter()
        raw, reduced, pca = item_embeddings(
            model, tok, texts, cfg.prompt(), cfg.pooling, cfg.aug_dim, cfg.infer_batch_size
        )
        wall = time.perf_counter() - start
        np.save(d / "raw_embeddings.npy", raw)
        np.save(d / "aug_embeddings.npy", reduced)
        pca.save(d / "pca.npz")
        info = {
            "n_items": len(texts) - 1,
            "hidden": int(raw.shape[1]),
            "aug_dim": int(reduced.shape[1]),
            "explained_variance": float(pca.explained_variance_ratio.sum()),
            "wall_s": wall,
            "s_per_item": wall / max(1, len(texts) - 1),
        }
        (d / "stage_b.json").write_text(json.dumps(info, indent=1))

    inputs = fingerprint(fingerprint_of(a_dir), list(texts))
    return cached(
        "stage_b", key, inputs, root, compute, lambda d: json.loads((d / "stage_b.json").read_text())
    )


def run_p2rec(
    cfg: P2RecConfig,
    dataset: SequenceDataset,
    split: Split,
    teacher_embeddings: np.ndarray,
    out_root: Path,
    teacher_score_fn: ScoreFn | None = None,
) -> P2RecResult:
    """Categories -> targets -> stage (a) -> [SFT timing] -> stage (b); writes `out_root/report.json`.

    `teacher_embeddings` is the teacher's (n_items + 1, d) item table (runs/<preset>/teacher/
    item_embeddings.npy); `teacher_score_fn(histories) -> (B, n_items + 1)` is only needed for
    target="teacher" (with it, the report also compares both targets)."""
    start = time.perf_counter()
    out_root.mkdir(parents=True, exist_ok=True)
    texts = catalogue_texts(dataset.items, cfg.prompt())
    cat_info, cat_dir = _categories_stage(cfg, teacher_embeddings, out_root)
    tgt_info, tgt_dir = _targets_stage(
        cfg, split, cat_dir, fingerprint(teacher_embeddings), teacher_score_fn, out_root
    )
    a_info, a_dir = _stage_a(cfg, split, texts, tgt_dir, out_root)
    report: dict[str, Any] = {
        "config": asdict(cfg),
        "categories": cat_info,
        "targets": tgt_info,
        "stage_a": a_info,
    }
    if cfg.sft_timing_examples > 0:
        sft = _sft_timing(cfg, split, texts, out_root)
        report["sft_baseline"] = sft
        if sft["epoch_s_estimate"]:
            # per-example times scaled to ALL users, so a max_users subsample does not flatter the ratio
            user_epoch = a_info["s_per_example"] * sum(1 for s in split.train if len(s))
            report["efficiency"] = {
                "user_level_epoch_s": user_epoch,
                "instance_level_epoch_s": sft["epoch_s_estimate"],
                "ratio": user_epoch / sft["epoch_s_estimate"],
            }
    b_info, b_dir = _stage_b(cfg, texts, a_dir, out_root)
    report["stage_b"] = b_info
    report["wall_s"] = time.perf_counter() - start
    report["dirs"] = {
        "categories": str(cat_dir),
        "targets": str(tgt_dir),
        "stage_a": str(a_dir),
        "stage_b": str(b_dir),
    }
    (out_root / "report.json").write_text(json.dumps(report, indent=1, default=str))
    return P2RecResult(
        b_dir / "aug_embeddings.npy",
        b_dir / "raw_embeddings.npy",
        b_dir / "pca.npz",
        a_dir,
        cat_dir / "category_of.npy",
        report,
    )
