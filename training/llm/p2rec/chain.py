"""`python -m training p2rec`: the TSLRec/P2Rec chain on a preset (arXiv 2406.00333), end to end.

    python -m training p2rec --preset p2rec-quick --export-to bundles   # the demo: minutes on this CPU
    python -m training p2rec --preset p2rec-full                        # the benchmark (hours on a CPU)
    python -m training p2rec --preset p2rec-tiny                        # CI: a random tiny LLM, seconds

prepare → teacher (the preset's SASRec over its seeds, cached exactly as `run` caches it, then exported) →
`run_p2rec` (categories, targets, stage a per target variant, efficiency timing, stage b; each cached) → every `p2rec_models` model
over the seeds on the augmented table (cached per (model, seed), keyed by the table's fingerprint) →
p2rec_report.md, metrics.json and plots → optionally the best variant as a service bundle.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from training import pipeline
from training.config import REPO_ROOT, RunConfig
from training.data.types import SequenceDataset, Split
from training.eval import aggregate, markdown_table, write_report
from training.llm.p2rec.categories import ScoreFn
from training.llm.p2rec.config import P2RecConfig, p2rec_config
from training.llm.p2rec.pipeline import P2RecResult, run_p2rec
from training.llm.p2rec.report import gains_table, p2rec_sections, regime_sections
from training.models import SequentialRecommender, build_model
from training.train import distributed, make_score_fn

log = logging.getLogger(__name__)
REPORT_NAME = "p2rec_report.md"
REPORT_JSON = "p2rec_report.json"

Runs = dict[str, list[dict[str, Any]]]  # model -> per-seed results (pipeline.train_one's dicts)


@dataclass
class P2RecRun:
    results: Runs  # the plain teacher first, then each p2rec model
    p2rec: P2RecResult
    aug: torch.Tensor  # (n_items + 1, aug_dim) the variants were trained on
    table: str  # markdown: test metrics, mean ± std over seeds
    gains: str  # markdown: relative NDCG@10 change of each variant against the plain teacher
    regimes: dict[str, Any] = field(default_factory=dict)  # regime -> {"n_users", "rows": aggregated}


def check_models(cfg: RunConfig, n_items: int) -> None:
    """Build every p2rec model on a placeholder table, so a bad name or parameter fails before the
    (slow) LLM stages rather than after them."""
    probe = torch.ones(n_items + 1, p2rec_config(cfg).aug_dim)
    for spec in cfg.p2rec_models:
        build_model(spec.kind, n_items, spec.params, probe)


def ensure_teacher(cfg: RunConfig, split: Split) -> tuple[list[dict[str, Any]], Path]:
    """The teacher's per-seed results (trained only where not cached) and its export folder."""
    runs = pipeline.train_stage(cfg, split, [cfg.teacher.model])[cfg.teacher.model]
    return runs, distributed.on_main(pipeline.export_teacher, cfg, split)


def teacher_score_fn(cfg: RunConfig, split: Split, teacher_dir: Path) -> ScoreFn:
    """The exported teacher as histories -> (B, n_items + 1) scores, for teacher targets."""
    meta = json.loads((teacher_dir / "teacher.json").read_text())
    spec = cfg.model_spec(meta["model"])
    model = pipeline.load_trained(cfg, spec, meta["seed"], split.n_items)
    return make_score_fn(model, model.max_len, spec.train.eval_batch_size)


def train_variants(cfg: RunConfig, split: Split, aug: torch.Tensor) -> Runs:
    return {
        spec.name: [pipeline.train_one(cfg, spec, seed, split, aug) for seed in cfg.eval.seeds]
        for spec in cfg.p2rec_models
    }


def regime_runs(cfg: RunConfig, split: Split, aug: torch.Tensor) -> dict[str, list[dict[str, Any]]]:
    """model -> per-seed regime metrics (pipeline.regime_result) for the teacher and every p2rec model."""
    out = {cfg.teacher.model: [pipeline.regime_result(cfg, cfg.model_spec(cfg.teacher.model), s, split)
                               for s in cfg.eval.seeds]}
    for spec in cfg.p2rec_models:
        out[spec.name] = [pipeline.regime_result(cfg, spec, s, split, aug) for s in cfg.eval.seeds]
    return out


def aggregate_regimes(runs: dict[str, list[dict[str, Any]]], seeds: list[int], names: list[str]) -> dict[str, Any]:
    """{regime: {"n_users": n, "rows": aggregated (model -> protocol -> metric)}} for the named regimes
    that have users."""
    out: dict[str, Any] = {}
    for name in names:
        first = next(iter(runs.values()))[0][name]
        if not first["n_users"]:
            continue
        per_seed = {m: [{p: v for p, v in r[name].items() if p != "n_users"} for r in rs] for m, rs in runs.items()}
        out[name] = {"n_users": first["n_users"], "rows": aggregate(per_seed, seeds)}
    return out


def cold_config(cfg: RunConfig, p2cfg: P2RecConfig) -> tuple[RunConfig, P2RecConfig]:
    """The same preset on the cold-start split (its own output folder, `cold/`); stage (a) on the chosen
    target only, no efficiency timing (both are measured on the usual split)."""
    data = replace(cfg.data, cold_item_frac=p2cfg.cold_item_frac, cold_seed=p2cfg.seed)
    cold = replace(cfg, data=data, output_dir=str(pipeline.output_dir(cfg) / "cold"))
    return cold, replace(p2cfg, target_variants=[], sft_timing_examples=0)


def _p2rec_on(
    cfg: RunConfig, p2cfg: P2RecConfig, ds: SequenceDataset, split: Split
) -> tuple[Runs, P2RecResult, torch.Tensor]:
    teacher_runs, teacher_dir = ensure_teacher(cfg, split)
    # Always hand over the teacher: with another target it only reports how far that target is from the
    # teacher's distribution.
    res = run_p2rec(
        p2cfg,
        ds,
        split,
        np.load(teacher_dir / "item_embeddings.npy"),
        pipeline.output_dir(cfg) / "p2rec",
        teacher_score_fn(cfg, split, teacher_dir),
    )
    aug = torch.from_numpy(np.load(res.aug_path))
    return {cfg.teacher.model: teacher_runs, **train_variants(cfg, split, aug)}, res, aug


def report(
    cfg: RunConfig, results: Runs, p2rec_report: dict[str, Any], command: str, regimes: dict[str, Any] | None = None
) -> tuple[str, str]:
    """metrics.json, p2rec_report.md/.json and the plots under output_dir; returns (metrics table, gains)."""
    agg = aggregate({m: [r["test"] for r in runs] for m, runs in results.items()}, cfg.eval.seeds)
    curves = {m: {r["seed"]: r["curves"] for r in runs} for m, runs in results.items()}
    gains = gains_table(agg, cfg.teacher.model)
    write_report(
        agg,
        pipeline.output_dir(cfg),
        curves=curves,
        title=f"{cfg.name}: plain {cfg.teacher.model} against P2Rec variants, mean ± std over seeds {cfg.eval.seeds}",
        command=command,
        report_name=REPORT_NAME,
        sections=[
            *([f"**{note}**"] if (note := p2rec_report["config"].get("report_note", "")) else []),
            *regime_sections(regimes or {}, cfg.teacher.model),
            *p2rec_sections(p2rec_report, gains, command),
        ],
    )
    keep = ("config", "categories", "targets", "target_variants", "efficiency", "stage_a", "stage_b")
    valid = {m: float(np.mean([r["best_valid_ndcg@10"] for r in runs])) for m, runs in results.items()}
    doc = {
        "preset": cfg.name,
        "command": command,
        "note": p2rec_report["config"].get("report_note", ""),
        "baseline": cfg.teacher.model,
        "best_variant": best_variant(cfg, results),  # by mean validation NDCG@10, never by test
        "valid_ndcg@10": valid,
        "rows": agg,
        "regimes": regimes or {},
        "p2rec": {k: p2rec_report[k] for k in keep if k in p2rec_report},
    }
    (pipeline.output_dir(cfg) / REPORT_JSON).write_text(json.dumps(doc, indent=1, default=str))
    return markdown_table(agg), gains


def run_chain(cfg: RunConfig, ds: SequenceDataset, split: Split, command: str) -> P2RecRun:
    """Teacher → P2Rec LLM stages → SR variants → regimes [→ the same on a cold-start split] → report;
    every step resumes from its cache."""
    from training.eval.regimes import REGIMES

    p2cfg = p2rec_config(cfg)
    check_models(cfg, split.n_items)
    results, res, aug = _p2rec_on(cfg, p2cfg, ds, split)
    regimes = aggregate_regimes(regime_runs(cfg, split, aug), cfg.eval.seeds, [r for r in REGIMES if r != "cold"])
    if p2cfg.cold_item_frac > 0:
        cold_cfg, cold_p2 = cold_config(cfg, p2cfg)
        _, cold_split = pipeline.prepare_stage(cold_cfg)
        _, _, cold_aug = _p2rec_on(cold_cfg, cold_p2, ds, cold_split)
        cold = aggregate_regimes(regime_runs(cold_cfg, cold_split, cold_aug), cfg.eval.seeds, ["cold"])
        regimes.update(cold)
    table, gains = report(cfg, results, res.report, command, regimes)
    return P2RecRun(results, res, aug, table, gains, regimes)


def publish(cfg: RunConfig, dest: Path) -> list[Path]:
    """Copy p2rec_report.md/.json and the plots to `dest` as p2rec-<preset>.* (docs/results)."""
    from training.eval.report import publish_report

    name = cfg.name if cfg.name.startswith("p2rec-") else f"p2rec-{cfg.name}"
    return publish_report(pipeline.output_dir(cfg), REPORT_NAME, REPORT_JSON, dest, name)


def best_variant(cfg: RunConfig, results: Runs) -> str:
    """The p2rec model with the best mean validation NDCG@10 over seeds."""
    return max(
        (spec.name for spec in cfg.p2rec_models),
        key=lambda name: float(np.mean([r["best_valid_ndcg@10"] for r in results[name]])),
    )


def variant_tag(model_name: str) -> str:
    """The manifest's `encoder.variant`: sasrec_adapter -> "p2rec-adapter", sasrec_init -> "p2rec-init"."""
    return "p2rec-" + model_name.removeprefix("sasrec_").replace("_", "-")


def check_item_table(model: SequentialRecommender) -> None:
    """Every catalogue item must have a usable row: cold items (no training interaction) get theirs from
    their text through stage (b), so an all-zero row means the chain is broken, not that the item is new."""
    table = model.item_table().detach()[1:]
    zero = torch.nonzero(~table.any(dim=1)).flatten() + 1
    if len(zero):
        raise ValueError(f"{len(zero)} items have an all-zero embedding row (first: {zero[:5].tolist()})")


def export_variant(
    cfg: RunConfig, ds: SequenceDataset, split: Split, run: P2RecRun, out: Path, model_name: str | None = None
) -> Path:
    """Bundle a p2rec model (default: `best_variant`) at its best-validation seed, with the stage (b) PCA and
    the stage (a) adapter under p2rec/ so new items can be embedded later from their text."""
    from training.export import export_bundle

    name = model_name or best_variant(cfg, run.results)
    if name not in run.results or name == cfg.teacher.model:
        raise ValueError(f"{name!r} is not a p2rec model of {cfg.name!r}: {[s.name for s in cfg.p2rec_models]}")
    chosen = pipeline.pick_run(name, run.results[name], None)
    model = pipeline.load_trained(cfg, cfg.model_spec(name), chosen["seed"], split.n_items, run.aug)
    check_item_table(model)
    over_seeds = json.loads((pipeline.output_dir(cfg) / "metrics.json").read_text())
    metrics = {
        "seed": chosen["seed"],
        "test": chosen["test"],
        "best_valid_ndcg@10": chosen["best_valid_ndcg@10"],
        "over_seeds": over_seeds.get(name, {}),
        "plain_over_seeds": over_seeds.get(cfg.teacher.model, {}),
        "p2rec_efficiency": run.p2rec.report.get("efficiency", {}),
    }
    extra = {"p2rec/pca.npz": run.p2rec.pca_path, "p2rec/stage_a": run.p2rec.adapter_dir}
    out = out if out.is_absolute() else REPO_ROOT / out
    return export_bundle(cfg, ds, model, name, out, variant=variant_tag(name), metrics=metrics, extra_files=extra)
