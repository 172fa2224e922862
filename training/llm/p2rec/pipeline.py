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
from training.device import device_label, model_device, resolve_device
from training.llm.core.cache import cached, fingerprint, fingerprint_of
from training.llm.core.model import load_base, load_tokenizer
from training.llm.core.prompts import catalogue_texts, shown_items, user_prompt_ids
from training.llm.p2rec.categories import (
    ScoreFn,
    balance,
    compare_targets,
    counts_targets,
    fit_categories,
    kl_rows,
    next_nll,
    recency_targets,
    shown_targets,
    sweep_k,
    target_fit,
    teacher_targets,
)
from training.llm.p2rec.config import P2RecConfig
from training.llm.p2rec.efficiency import measure_efficiency
from training.llm.p2rec.stage_a import (
    load_stage_a,
    merge_lora,
    predict,
    save_stage_a,
    train_stage_a,
)
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
    cfg: P2RecConfig,
    split: Split,
    texts: Sequence[str],
    cat_dir: Path,
    teacher_fp: str,
    score_fn: ScoreFn | None,
    root: Path,
) -> tuple[dict[str, Any], Path]:
    """Every target variant as targets_<name>.npy (teacher only with a score function), n_shown.npy, and
    how far each is from the whole-history counts."""
    if "teacher" in cfg.variants() and score_fn is None:
        raise ValueError("target='teacher' needs the teacher's score function (teacher_score_fn)")
    key = {
        "temperature": cfg.teacher_temperature,
        "mask_history": cfg.teacher_mask_history,
        "has_teacher": score_fn is not None,
        "half_life": cfg.recency_half_life,
        "prompt": asdict(cfg.prompt()),  # what the prompt shows defines the "shown" target
        "enc": cfg.base_model,
    }

    def compute(d: Path) -> None:
        category_of = np.load(cat_dir / "category_of.npy")
        tok = load_tokenizer(cfg.encoder())
        n_shown = np.array([shown_items(s, texts, cfg.prompt(), tok) if len(s) else 0 for s in split.train])
        variants = {
            "counts": counts_targets(split.train, category_of, cfg.k),
            "shown": shown_targets(split.train, category_of, cfg.k, n_shown),
            "recency": recency_targets(split.train, category_of, cfg.k, cfg.recency_half_life),
        }
        if score_fn is not None:
            variants["teacher"] = teacher_targets(
                split.train, category_of, cfg.k, score_fn, cfg.teacher_temperature, cfg.teacher_mask_history
            )
        for name, value in variants.items():
            np.save(d / f"targets_{name}.npy", value.astype(np.float32))
        np.save(d / "n_shown.npy", n_shown)
        lengths = np.array([len(s) for s in split.train])
        info: dict[str, Any] = {
            "variants": sorted(variants),
            "vs_counts": {n: compare_targets(variants["counts"], v) for n, v in variants.items() if n != "counts"},
            "mean_train_items": float(lengths.mean()),
            "mean_shown_items": float(n_shown.mean()),
        }
        if "teacher" in variants:  # the name earlier reports used
            info["counts_vs_teacher"] = info["vs_counts"]["teacher"]
        (d / "targets.json").write_text(json.dumps(info, indent=1))

    inputs = fingerprint(fingerprint_of(cat_dir), teacher_fp, list(split.train), list(texts))
    return cached(
        "targets", key, inputs, root, compute, lambda d: json.loads((d / "targets.json").read_text())
    )


def _stage_a(
    cfg: P2RecConfig, split: Split, texts: Sequence[str], tgt_dir: Path, variant: str, root: Path
) -> tuple[dict[str, Any], Path]:
    """Stage (a) tuned on one target variant; also saves which users it tuned on (train_users.npy) and
    held out (valid_users.npy), for the target comparison."""
    key = {
        "enc": asdict(cfg.encoder()) | {"device": None},
        "lora": asdict(cfg.lora()),
        "prompt": asdict(cfg.prompt()),
        "train": asdict(cfg.stage_a()),
        "max_users": cfg.max_users,
        "target": variant,
    }
    target_file = tgt_dir / f"targets_{variant}.npy"

    def compute(d: Path) -> None:
        targets = np.load(target_file)
        model, tok = load_base(cfg.encoder())
        users = _users(split, cfg.max_users, cfg.seed)
        prompts = [user_prompt_ids(split.train[u], texts, cfg.prompt(), tok) for u in users]
        res = train_stage_a(
            model, tok.pad_token_id, prompts, targets[users], cfg.stage_a(), cfg.lora(), cfg.pooling
        )
        np.save(d / "valid_users.npy", users[res.valid_idx])
        np.save(d / "train_users.npy", users[res.train_idx])
        report = res.report() | {
            "target": variant,
            "n_users": len(users),
            "mean_prompt_tokens": float(np.mean([len(p) for p in prompts])),
            "device": device_label(model_device(res.model)),
        }
        save_stage_a(res.model, res.head, d, report)

    inputs = fingerprint(fingerprint(np.load(target_file)), list(texts), list(split.train))
    return cached(
        "stage_a", key, inputs, root, compute, lambda d: json.loads((d / "stage_a.json").read_text())
    )


def _target_eval(
    cfg: P2RecConfig, split: Split, texts: Sequence[str], variant: str, a_dir: Path, root: Path
) -> tuple[dict[str, Any], Path]:
    """The stage (a) model of one target variant run on users it was not tuned on: all its held-out users
    (which picked its epoch) plus users outside the `max_users` subsample, up to `target_eval_users` in all
    (users.npy, pred.npy)."""
    key = {"prompt": asdict(cfg.prompt()), "n": cfg.target_eval_users, "seed": cfg.seed, "pooling": cfg.pooling}

    def compute(d: Path) -> None:
        tuned = set(np.load(a_dir / "train_users.npy").tolist())
        pool = np.array([u for u, s in enumerate(split.train) if len(s) and u not in tuned], dtype=np.int64)
        held = np.load(a_dir / "valid_users.npy")
        rest = np.setdiff1d(pool, held)
        n_rest = max(0, min(len(rest), cfg.target_eval_users - len(held)))
        users = np.sort(np.concatenate([held, np.random.default_rng(cfg.seed).choice(rest, n_rest, replace=False)]))
        model, head, tok = load_stage_a(a_dir, cfg.encoder())
        prompts = [user_prompt_ids(split.train[u], texts, cfg.prompt(), tok) for u in users]
        np.save(d / "users.npy", users)
        np.save(d / "pred.npy", predict(model, head, prompts, tok.pad_token_id, cfg.pooling, cfg.infer_batch_size))
        (d / "target_eval.json").write_text(json.dumps({"variant": variant, "n_users": len(users)}))

    inputs = fingerprint(fingerprint_of(a_dir), list(split.train))
    return cached(
        "target_eval", key, inputs, root, compute, lambda d: json.loads((d / "target_eval.json").read_text())
    )


def target_comparison(
    cfg: P2RecConfig, split: Split, tgt_dir: Path, cat_dir: Path, eval_dirs: dict[str, tuple[Path, Path]]
) -> dict[str, dict[str, float]]:
    """{variant: categories.target_fit(...)} on users each variant's stage (a) was not tuned on (the same
    users for every variant: they depend only on the user subsample and the seed). `eval_dirs[variant]` is
    (stage (a) folder, `_target_eval` folder)."""
    category_of = np.load(cat_dir / "category_of.npy")
    n_shown = np.load(tgt_dir / "n_shown.npy")
    shown_all = np.load(tgt_dir / "targets_shown.npy")
    out = {}
    for variant, (a_dir, e_dir) in eval_dirs.items():
        target = np.load(tgt_dir / f"targets_{variant}.npy")
        va, tr = np.load(e_dir / "users.npy"), np.load(a_dir / "train_users.npy")
        if not len(va):
            continue
        prior = target[tr].mean(axis=0)
        # the histogram's pseudo-counts are picked on the tuned users, once per column's measure
        alpha = min(SMOOTHING, key=lambda a: kl_rows(target[tr], _smoothed(shown_all[tr], n_shown[tr], prior, a)).mean())
        nxt_tr = category_of[np.asarray(split.valid_target)[tr]]
        alpha_nll = min(SMOOTHING, key=lambda a: next_nll(_smoothed(shown_all[tr], n_shown[tr], prior, a), nxt_tr))
        next_category = category_of[np.asarray(split.valid_target)[va]]
        fit = target_fit(
            target[va], np.load(e_dir / "pred.npy"), prior, _smoothed(shown_all[va], n_shown[va], prior, alpha),
            next_category, _smoothed(shown_all[va], n_shown[va], prior, alpha_nll),
        )
        out[variant] = fit | {"shown_pseudo_counts": alpha, "shown_pseudo_counts_nll": alpha_nll,
                              "epoch_picked_on": float(np.isin(va, np.load(a_dir / "valid_users.npy")).mean())}
    return out


SMOOTHING = (0.5, 1.0, 2.0, 5.0, 10.0, 20.0, 50.0)  # pseudo-counts tried for the shown-histogram predictor


def _smoothed(hist: np.ndarray, n: np.ndarray, prior: np.ndarray, alpha: float) -> np.ndarray:
    """The shown-category histogram with `alpha` pseudo-counts spread as `prior` (alpha is picked on the
    training users, per variant, as the value with the lowest KL to their target)."""
    n = n[:, None].astype(np.float64)
    return (n * hist + alpha * prior) / (n + alpha)


def _efficiency(
    cfg: P2RecConfig, split: Split, texts: Sequence[str], tgt_dir: Path, cat_dir: Path, root: Path
) -> dict[str, Any]:
    """efficiency.measure_efficiency, cached per device label (a CPU time is never divided by a GPU time)."""
    device = device_label(resolve_device(cfg.device))
    key = {
        "enc": asdict(cfg.encoder()) | {"device": None},
        "lora": asdict(cfg.lora()),
        "prompt": asdict(cfg.prompt()),
        "n": cfg.sft_timing_examples,
        "bs": cfg.batch_size,
        "seed": cfg.seed,
        "on": device,
    }
    target_file = tgt_dir / f"targets_{cfg.target}.npy"

    def compute(d: Path) -> None:
        model, tok = load_base(cfg.encoder())
        eff = measure_efficiency(
            model, tok, split.train, texts, np.load(target_file), np.load(cat_dir / "category_of.npy"),
            cfg.prompt(), cfg.sft_timing_examples, cfg.batch_size, cfg.lr, cfg.lora(), cfg.pooling, cfg.seed,
        )
        (d / "efficiency.json").write_text(json.dumps(eff.report(), indent=1))

    inputs = fingerprint(list(texts), list(split.train), fingerprint(np.load(target_file)))
    value, _ = cached(
        "efficiency", key, inputs, root, compute, lambda d: json.loads((d / "efficiency.json").read_text())
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
    """Categories -> targets -> stage (a) per target variant -> [efficiency] -> stage (b) on `cfg.target`'s
    stage (a); writes `out_root/report.json`.

    `teacher_embeddings` is the teacher's (n_items + 1, d) item table (runs/<preset>/teacher/
    item_embeddings.npy); `teacher_score_fn(histories) -> (B, n_items + 1)` is only needed for
    target="teacher" (with it, the report also compares both targets)."""
    start = time.perf_counter()
    out_root.mkdir(parents=True, exist_ok=True)
    texts = catalogue_texts(dataset.items, cfg.prompt())
    cat_info, cat_dir = _categories_stage(cfg, teacher_embeddings, out_root)
    tgt_info, tgt_dir = _targets_stage(
        cfg, split, texts, cat_dir, fingerprint(teacher_embeddings), teacher_score_fn, out_root
    )
    a_runs = {v: _stage_a(cfg, split, texts, tgt_dir, v, out_root) for v in cfg.variants()}
    a_info, a_dir = a_runs[cfg.target]
    tgt_info = tgt_info | {"target": cfg.target}
    report: dict[str, Any] = {
        "config": asdict(cfg),
        "categories": cat_info,
        "targets": tgt_info,
        "stage_a": a_info,
    }
    # compared only when variants are asked for: one forward pass per evaluated user and variant
    evals = {v: (d, _target_eval(cfg, split, texts, v, d, out_root)[1]) for v, (_, d) in a_runs.items()
             if cfg.target_variants}
    report["target_variants"] = {
        v: {"fit": fit, "best_epoch": a_runs[v][0]["best_epoch"], "curves": a_runs[v][0]["curves"]}
        for v, fit in target_comparison(cfg, split, tgt_dir, cat_dir, evals).items()
    }
    if cfg.sft_timing_examples > 0:
        report["efficiency"] = _efficiency(cfg, split, texts, tgt_dir, cat_dir, out_root)
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
