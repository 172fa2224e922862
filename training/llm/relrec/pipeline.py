"""ReLRec end to end on one dataset (Na et al., Findings of EMNLP 2024): pseudo-labels (training-period
reviews; metadata without reviews) -> per seed, the plain next-item LoRA fine-tune (the ablation) and the
ReLRec multi-task LoRA (next item + user-label + item-label reconstruction) -> cand20 test scores (the
protocol's own candidates, as DELRec's rows) -> language keeping (perplexity.py) of the base LLM, the plain
fine-tune and ReLRec. Every step is cached by config hash (training/llm/core/cache.py), so an interrupted run
resumes where it stopped. The report dict is returned and written to `<out_root>/relrec_report.json`.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from training.data.types import SequenceDataset, Split
from training.llm.core.adapters import load_adapter
from training.llm.core.cache import cached, fingerprint, fingerprint_of
from training.llm.core.model import load_base
from training.llm.core.ranker import LabelRanker, RankItem
from training.llm.delrec.evaluate import cand_metrics, mean_std
from training.llm.relrec import tasks
from training.llm.relrec.config import RelRecConfig
from training.llm.relrec.labels import PseudoLabels, build_labels
from training.llm.relrec.perplexity import EXPLANATIONS, heldout_review_texts, language_report
from training.llm.relrec.tune import META, build_tasks, save_adapter, tune_relrec
from training.train import distributed

if TYPE_CHECKING:
    from training.config import RunConfig

log = logging.getLogger(__name__)
REPORT = "relrec_report.json"


@dataclass
class Questions:
    """The users and evaluation questions of one run (deterministic from the config and the split)."""

    train_users: np.ndarray  # users whose training positions give the training questions
    valid: list[RankItem]  # cand20 validation questions (epoch selection)
    test: list[RankItem]  # cand20 test questions (the report's rows)


def build_questions(cfg: RelRecConfig, split: Split, protocol_seed: int) -> Questions:
    everyone = np.arange(split.n_users)
    train_users = tasks.sample(np.array([u for u in everyone if len(split.train[u]) >= 4]), cfg.max_users, 0)
    return Questions(
        train_users,
        tasks.protocol_items(split, "valid", tasks.sample(everyone, cfg.valid_users, 2), protocol_seed),
        tasks.protocol_items(split, "test", tasks.sample(everyone, cfg.eval_users, 1), protocol_seed),
    )


def inputs_fingerprint(ds: SequenceDataset, split: Split) -> str:
    """What every stage reads from the data: sequences, held-out targets, titles and review texts."""
    reviews = sorted([u, i, *r] for (u, i), r in ds.reviews.items())
    return fingerprint(list(split.train), [split.valid_target, split.test_target],
                       [m.title or "" for m in ds.items], reviews)


def _enc_key(cfg: RelRecConfig) -> dict[str, Any]:
    return asdict(cfg.encoder()) | {"device": None}  # where a model runs does not change what it is


def _model(cfg: RelRecConfig, adapter: Path | None) -> tuple[Any, Any]:
    model, tok = load_base(cfg.encoder())
    return (load_adapter(model, adapter) if adapter is not None else model.eval()), tok


def labels_stage(cfg: RelRecConfig, ds: SequenceDataset, split: Split, inputs_fp: str,
                 root: Path) -> tuple[PseudoLabels, Path]:
    def compute(d: Path) -> None:
        build_labels(ds, split, cfg.labels()).save(d / "labels.json")

    return cached("relrec_labels", asdict(cfg.labels()), inputs_fp, root, compute,
                  lambda d: PseudoLabels.load(d / "labels.json"))


def tune_stage(cfg: RelRecConfig, seed: int, split: Split, q: Questions, titles: list[str | None],
               labels: tuple[PseudoLabels, Path], reconstruction: bool, inputs_fp: str, root: Path) -> Path:
    """One LoRA fine-tune: ReLRec (`reconstruction`) or the plain next-item ablation. Returns the adapter."""
    tune = asdict(cfg.tune(seed))
    key = {"enc": _enc_key(cfg), "spec": cfg.spec().model_dump(), "lora": asdict(cfg.lora()),
           "kind": cfg.lora_kind, "per_user": cfg.examples_per_user, "max_users": cfg.max_users,
           "valid_users": cfg.valid_users, "reconstruction": reconstruction,
           "tune": tune if reconstruction else tune | {"task_weights": {"rec": 1.0}, "weighting": "fixed"},
           "labels": [fingerprint_of(labels[1]), cfg.max_label_items, cfg.max_label_tokens] if reconstruction
           else None}

    def compute(d: Path) -> None:
        model, tok = load_base(cfg.encoder())
        ranker = LabelRanker(tok, titles, cfg.spec())
        task_items = build_tasks(cfg, split, labels[0], q.train_users, titles, seed, reconstruction)
        peft_model, res = tune_relrec(model, ranker, task_items, cfg, seed, q.valid)
        examples = {t: (ranker.prompt_text(v[0]) if isinstance(v[0], RankItem) else v[0].prompt + " => "
                        + v[0].target) for t, v in task_items.items() if v}
        save_adapter(peft_model, d / "adapter", res.report() | {"reconstruction": reconstruction,
                                                               "example_prompts": examples})

    _, folder = cached("relrec_tune", key, inputs_fp, root, compute, lambda d: None)
    return folder / "adapter"


def score_stage(cfg: RelRecConfig, q: Questions, titles: list[str | None], adapter: Path | None,
                inputs_fp: str, root: Path) -> np.ndarray:
    """(N, C) label log-probabilities of the cand20 test questions under the base LLM or an adapter."""
    key = {"enc": _enc_key(cfg), "spec": cfg.spec().model_dump(), "eval_users": cfg.eval_users,
           "adapter": fingerprint_of(adapter.parent) if adapter is not None else None}

    def compute(d: Path) -> None:
        model, tok = _model(cfg, adapter)
        np.save(d / "test.npy", LabelRanker(tok, titles, cfg.spec()).scores(model, q.test, None,
                                                                             cfg.eval_batch_size))

    scores, _ = cached("relrec_scores", key, inputs_fp, root, compute, lambda d: np.load(d / "test.npy"))
    return scores


def language_stage(cfg: RelRecConfig, ds: SequenceDataset, split: Split, adapter: Path | None,
                   inputs_fp: str, root: Path) -> dict[str, Any]:
    """Held-out review perplexity and explanation log-likelihood of the base LLM or an adapter."""
    key = {"enc": _enc_key(cfg), "which": cfg.perplexity_reviews, "docs": cfg.perplexity_docs,
           "max_tokens": cfg.perplexity_max_tokens, "explanations": fingerprint(list(EXPLANATIONS)),
           "adapter": fingerprint_of(adapter.parent) if adapter is not None else None}

    def compute(d: Path) -> None:
        texts = heldout_review_texts(ds, split, cfg.perplexity_reviews, cfg.perplexity_docs)
        model, tok = _model(cfg, adapter)
        report = language_report(model, tok, texts, cfg.perplexity_max_tokens, cfg.eval_batch_size)
        (d / "language.json").write_text(json.dumps(report, indent=1))

    lang, _ = cached("relrec_language", key, inputs_fp, root, compute,
                     lambda d: json.loads((d / "language.json").read_text()))
    return lang


def language_row(lang: dict[str, Any]) -> dict[str, float]:
    """The two headline figures of a language report (NaN where a dataset has no held-out reviews)."""
    review = lang["review"]
    return {"review_perplexity": review["perplexity"] if review else float("nan"),
            "explain_loglik": lang["explain"]["mean_token_loglik"]}


def _variant(cfg: RelRecConfig, ds: SequenceDataset, split: Split, q: Questions, adapter: Path,
             inputs_fp: str, root: Path) -> dict[str, Any]:
    """One tuned model's figures: cand20 test metrics, its training record, its language figures."""
    return {"test": cand_metrics(score_stage(cfg, q, [None] + [m.title for m in ds.items], adapter, inputs_fp,
                                             root), q.test),
            "tune": json.loads((adapter / META).read_text()),
            "language": language_stage(cfg, ds, split, adapter, inputs_fp, root)}


def _summary(per_seed: dict[str, dict[str, Any]], variant: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """(cand20 mean/std over seeds, language mean/std over seeds) of one variant."""
    runs = [r[variant] for r in per_seed.values() if variant in r]
    return mean_std([r["test"] for r in runs]), mean_std([language_row(r["language"]) for r in runs])


def run_relrec(cfg: RelRecConfig, run_cfg: RunConfig, ds: SequenceDataset, split: Split,
               out_root: Path) -> dict[str, Any]:
    """labels -> per seed: plain fine-tune (ablation) and ReLRec -> cand20 test -> language; the report."""
    titles: list[str | None] = [None] + [m.title for m in ds.items]
    inputs = inputs_fingerprint(ds, split)
    q = build_questions(cfg, split, run_cfg.eval.protocol_seed)
    labels = labels_stage(cfg, ds, split, inputs, out_root)
    per_seed: dict[str, dict[str, Any]] = {}
    for seed in run_cfg.eval.seeds:
        variants = [*([("plain", False)] if cfg.ablation else []), ("relrec", True)]
        adapters = {name: tune_stage(cfg, seed, split, q, titles, labels, rec, inputs, out_root)
                    for name, rec in variants}
        per_seed[str(seed)] = {name: _variant(cfg, ds, split, q, a, inputs, out_root)
                               for name, a in adapters.items()}
    base_language = language_stage(cfg, ds, split, None, inputs, out_root)
    rows, language = {}, {"base": mean_std([language_row(base_language)])}
    if cfg.zero_shot:
        rows["zero_shot"] = cand_metrics(score_stage(cfg, q, titles, None, inputs, out_root), q.test)
    for name in ("plain", "relrec"):
        if any(name in r for r in per_seed.values()):
            rows[name], language[name] = _summary(per_seed, name)
    pl = labels[0]
    report = {
        "method": "relrec", "preset": run_cfg.name, "dataset": ds.name, "seeds": list(run_cfg.eval.seeds),
        "labels": {"source": pl.source, "stats": pl.stats, "folder": fingerprint_of(labels[1]),
                   "examples": {"item": dict(list(pl.item.items())[:3]),
                                "user": dict(list(pl.user.items())[:3])}},
        "questions": {"train_users": len(q.train_users), "valid": len(q.valid), "test": len(q.test)},
        "weights": cfg.weights(), "weighting": cfg.weighting,
        "rows": rows, "language": language, "base_language": base_language, "per_seed": per_seed,
        "config": asdict(cfg),
    }
    if distributed.current().is_main:  # under torchrun every rank has the same report; one writes it
        out_root.mkdir(parents=True, exist_ok=True)
        (out_root / REPORT).write_text(json.dumps(report, indent=1, default=str))
        log.info("ReLRec report: %s", out_root / REPORT)
    return report
