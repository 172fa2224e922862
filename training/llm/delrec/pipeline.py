"""DELRec end to end for one preset (arXiv 2406.11156): per seed, stage 1 (soft prompt distilled from the
teacher, LLM frozen) -> stage 2 (LoRA ranking fine-tune, soft prompt frozen) and the ablation (stage 2
without a soft prompt) -> LLM scores on the evaluation questions; the zero-shot LLM is scored once. Every
step is cached by config hash (training/llm/core/cache.py), so an interrupted run resumes where it stopped.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from training.data.types import Split
from training.llm.core.cache import cached, fingerprint, fingerprint_of
from training.llm.core.model import load_base
from training.llm.core.ranker import LabelRanker, RankItem, title_loglik
from training.llm.core.soft_prompt import SoftPrompt
from training.llm.delrec import tasks
from training.llm.delrec.config import DelRecConfig
from training.llm.delrec.distill import distill_soft_prompt
from training.llm.delrec.evaluate import retrieval_items
from training.llm.delrec.tune import load_adapter, save_adapter, tune_ranker
from training.models import SequentialRecommender
from training.pipeline import teacher_topk

log = logging.getLogger(__name__)


@dataclass
class Questions:
    """Every question of one run, built once (deterministic from the config and the split)."""

    train_users: np.ndarray
    valid: list[RankItem]  # cand20 validation questions (epoch selection, lambda)
    test: list[RankItem]  # cand20 test questions (the report's rows)
    retrieval_valid: list[RankItem]  # the teacher's top-n, for the served lambda
    retrieval_test: list[RankItem]  # the service's setting


def _sample(users: np.ndarray, n: int | None, seed: int) -> np.ndarray:
    if n is None or n >= len(users):
        return users
    return np.sort(np.random.default_rng(seed).choice(users, size=n, replace=False))


def build_questions(cfg: DelRecConfig, split: Split, topk_valid: np.ndarray, topk_test: np.ndarray,
                    protocol_seed: int) -> Questions:
    everyone = np.arange(split.n_users)
    train_users = _sample(np.array([u for u in everyone if len(split.train[u]) >= 4]), cfg.max_users, 0)
    valid_users = _sample(everyone, cfg.valid_users, 2)
    test_users = _sample(everyone, cfg.eval_users, 1)
    n = cfg.n_candidates
    return Questions(
        train_users,
        tasks.protocol_items(split, "valid", valid_users, protocol_seed),
        tasks.protocol_items(split, "test", test_users, protocol_seed),
        retrieval_items(split.valid_history, split.valid_target, topk_valid, n, valid_users),
        retrieval_items(split.test_history, split.test_target, topk_test, n, test_users),
    )


def _ranker(cfg: DelRecConfig, tok: Any, titles: list[str | None]) -> LabelRanker:
    return LabelRanker(tok, titles, cfg.spec())


def stage1(cfg: DelRecConfig, seed: int, split: Split, q: Questions, titles: list[str | None],
           teacher: SequentialRecommender, inputs_fp: str, root: Path) -> Path:
    key = {"enc": asdict(cfg.encoder()) | {"device": None}, "spec": cfg.spec().model_dump(), "n_soft": cfg.n_soft_tokens,
           "rps": [cfg.rps_teacher_k, cfg.rps_hints], "per_user": cfg.stage1_examples_per_user,
           "tune": cfg.stage1(seed).cache_key(), "max_users": cfg.max_users, "valid_users": cfg.valid_users}

    def compute(d: Path) -> None:
        model, tok = load_base(cfg.encoder())
        ranker = _ranker(cfg, tok, titles)
        k = cfg.n_candidates

        def top(hists: list[np.ndarray], n: int) -> np.ndarray:
            return teacher_topk(teacher, hists, teacher.max_len, n)

        rps = tasks.rps_items(split, q.train_users, cfg.stage1_examples_per_user, k, cfg.rps_teacher_k,
                              cfg.rps_hints, top, seed)
        ta = tasks.ta_items(split, q.train_users, cfg.stage1_examples_per_user, k, seed)
        rps, ta = (tasks.titled(x, titles, cfg.max_title_chars) for x in (rps, ta))
        soft, res = distill_soft_prompt(model, ranker, rps, ta, cfg.n_soft_tokens, cfg.stage1(seed), q.valid)
        soft.save(d / "soft_prompt.npy")
        example = {"rps": ranker.prompt_text(rps[0]) if rps else "", "ta": ranker.prompt_text(ta[0]) if ta else ""}
        (d / "stage1.json").write_text(json.dumps(res.report() | {"example_prompts": example}, indent=1))

    _, folder = cached("delrec_stage1", key, inputs_fp, root, compute, lambda d: None)
    return folder


def stage2(cfg: DelRecConfig, seed: int, split: Split, q: Questions, titles: list[str | None],
           s1: Path | None, inputs_fp: str, root: Path) -> Path:
    key = {"enc": asdict(cfg.encoder()) | {"device": None}, "spec": cfg.spec().model_dump(),
           "lora": asdict(cfg.lora()), "kind": cfg.lora_kind, "per_user": cfg.stage2_examples_per_user,
           "tune": cfg.stage2(seed).cache_key(), "max_users": cfg.max_users, "valid_users": cfg.valid_users,
           "stage1": fingerprint_of(s1) if s1 is not None else None}

    def compute(d: Path) -> None:
        model, tok = load_base(cfg.encoder())
        soft = SoftPrompt.load(s1 / "soft_prompt.npy").to(model.device) if s1 is not None else None
        items = tasks.rec_items(split, q.train_users, cfg.stage2_examples_per_user, cfg.n_candidates, seed)
        peft_model, res = tune_ranker(model, _ranker(cfg, tok, titles), items, cfg.lora(), cfg.lora_kind,
                                      cfg.stage2(seed), soft, q.valid)
        save_adapter(peft_model, d / "adapter", res.report() | {"soft_prompt": s1 is not None})

    _, folder = cached("delrec_stage2", key, inputs_fp, root, compute, lambda d: None)
    return folder


def _score_sets(model: Any, ranker: LabelRanker, soft: SoftPrompt | None, sets: dict[str, list[RankItem]],
                bs: int) -> dict[str, np.ndarray]:
    out = {}
    for name, items in sets.items():
        start = time.perf_counter()
        out[name] = ranker.scores(model, items, soft, bs)
        log.info("scored %s: %d questions in %.1f s", name, len(items), time.perf_counter() - start)
    return out


def score_stage(cfg: DelRecConfig, q: Questions, titles: list[str | None], s1: Path | None, s2: Path | None,
                full: bool, inputs_fp: str, root: Path) -> dict[str, np.ndarray]:
    """LLM label scores on the questions: `full` = every set (DELRec) plus the reversed test order and the
    title-likelihood agreement sample; else the cand20 test set only (zero-shot, ablation)."""
    key = {"enc": asdict(cfg.encoder()) | {"device": None}, "spec": cfg.spec().model_dump(), "full": full,
           "s1": fingerprint_of(s1) if s1 else None, "s2": fingerprint_of(s2) if s2 else None,
           "users": [cfg.eval_users, cfg.valid_users], "agree": cfg.title_agreement_users if full else 0}
    names = ["test", "valid", "test_reversed", "retrieval_valid", "retrieval_test"] if full else ["test"]

    def compute(d: Path) -> None:
        model, tok = load_base(cfg.encoder())
        if s2 is not None:
            model = load_adapter(model, s2 / "adapter")
        soft = SoftPrompt.load(s1 / "soft_prompt.npy").to(model.device) if s1 is not None else None
        ranker = _ranker(cfg, tok, titles)
        sets = {"test": q.test, "valid": q.valid, "test_reversed": [it.reversed() for it in q.test],
                "retrieval_valid": q.retrieval_valid, "retrieval_test": q.retrieval_test}
        start = time.perf_counter()
        scores = _score_sets(model, ranker, soft, {n: sets[n] for n in names}, cfg.eval_batch_size)
        per_question = (time.perf_counter() - start) / max(1, sum(len(sets[n]) for n in names))
        for name, arr in scores.items():
            np.save(d / f"{name}.npy", arr)
        info: dict[str, Any] = {"s_per_question": per_question}
        if full and cfg.title_agreement_users:
            info["title_agreement"] = title_agreement(model, ranker, soft, q.test[: cfg.title_agreement_users],
                                                      scores["test"][: cfg.title_agreement_users])
        (d / "scores.json").write_text(json.dumps(info, indent=1))

    _, folder = cached("delrec_scores", key, inputs_fp, root, compute, lambda d: None)
    out = {n: np.load(folder / f"{n}.npy") for n in names}
    out["_info"] = json.loads((folder / "scores.json").read_text())  # type: ignore[assignment]
    return out


def title_agreement(model: Any, ranker: LabelRanker, soft: SoftPrompt | None, items: list[RankItem],
                    label_scores: np.ndarray) -> dict[str, float]:
    """How far the one-prefill label scores agree with the full title log-likelihood ranking."""
    start = time.perf_counter()
    title = np.stack([title_loglik(model, ranker, it, soft) for it in items])
    wall = time.perf_counter() - start
    rho = [spearman(a, b) for a, b in zip(label_scores, title, strict=True)]
    return {
        "users": len(items),
        "top1_agreement": float(np.mean(label_scores.argmax(1) == title.argmax(1))),
        "spearman_mean": float(np.nanmean(rho)),
        "title_hr1": float(np.mean(title.argmax(1) == np.array([it.target for it in items]))),
        "label_hr1": float(np.mean(label_scores.argmax(1) == np.array([it.target for it in items]))),
        "title_s_per_question": wall / max(1, len(items)),
    }


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman's rank correlation (ties ranked by order; scores here are continuous)."""
    ra, rb = np.argsort(np.argsort(a)).astype(float), np.argsort(np.argsort(b)).astype(float)
    ra, rb = ra - ra.mean(), rb - rb.mean()
    denom = float(np.sqrt((ra**2).sum() * (rb**2).sum()))
    return float((ra * rb).sum() / denom) if denom else float("nan")


def inputs_fingerprint(split: Split, titles: list[str | None], teacher_fp: str) -> str:
    return fingerprint(list(split.train), [t or "" for t in titles], teacher_fp)


def set_threads() -> None:
    """Use every core for the LLM (the SR trainer may have lowered it), shared among the processes torchrun
    started on this machine."""
    import os

    from training.train.distributed import local_size

    torch.set_num_threads(max(1, (os.cpu_count() or 1) // local_size()))
