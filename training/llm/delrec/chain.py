"""`python -m training delrec`: DELRec on a preset (arXiv 2406.11156), end to end.

    python -m training delrec --preset delrec-quick --export-to bundles   # the demo: minutes on this CPU
    python -m training delrec --preset delrec-full                        # the ML-100K benchmark (GPU-sized)
    python -m training delrec --preset delrec-magazine                    # Amazon Magazine
    python -m training delrec --preset delrec-tiny                        # CI: a random tiny LLM, seconds

prepare -> teacher (the preset's SASRec, or `delrec.teacher_preset`'s, trained where not cached) -> per seed:
stage 1 (soft prompt), stage 2 (LoRA), the ablation (stage 2 without the soft prompt), LLM scores -> the
zero-shot LLM -> rows, blend, position bias, rerank after retrieval -> delrec_report.md / .json / .png ->
optionally a service bundle (the teacher's encoder and index + the ranker of the best seed).
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from training import pipeline
from training.config import REPO_ROOT, RunConfig, load_config
from training.data.types import SequenceDataset, Split
from training.llm.delrec import evaluate as ev
from training.llm.delrec.config import DelRecConfig, delrec_config
from training.llm.delrec.pipeline import (
    Questions,
    build_questions,
    inputs_fingerprint,
    score_stage,
    set_threads,
    stage1,
    stage2,
)
from training.models import SequentialRecommender
from training.train import distributed

log = logging.getLogger(__name__)


@dataclass
class DelRecRun:
    cfg: RunConfig
    dcfg: DelRecConfig
    report: dict[str, Any]  # the report JSON (rows shaped like metrics.json, plus the extra figures)
    best_seed: int
    stage1_dirs: dict[int, Path]
    stage2_dirs: dict[int, Path]
    teacher_cfg: RunConfig
    teacher_seed: int


def teacher_config(cfg: RunConfig, dcfg: DelRecConfig) -> RunConfig:
    """The preset whose teacher DELRec distils: `teacher_preset` when set (it must prepare the same data)."""
    if not dcfg.teacher_preset:
        return cfg
    tcfg = load_config(dcfg.teacher_preset, {"data.data_dir": cfg.data.data_dir} if cfg.data.data_dir else None)
    if tcfg.data_hash() != cfg.data_hash():
        raise ValueError(f"teacher_preset {dcfg.teacher_preset!r} prepares other data than {cfg.name!r}")
    return tcfg


def ensure_teacher(tcfg: RunConfig, split: Split) -> tuple[list[dict[str, Any]], SequentialRecommender, int]:
    runs = pipeline.train_stage(tcfg, split, [tcfg.teacher.model])[tcfg.teacher.model]
    meta = json.loads((distributed.on_main(pipeline.export_teacher, tcfg, split) / "teacher.json").read_text())
    model = pipeline.load_trained(tcfg, tcfg.model_spec(meta["model"]), meta["seed"], split.n_items)
    return runs, model, int(meta["seed"])


def _seed_rows(dcfg: DelRecConfig, q: Questions, teacher_s: dict[str, np.ndarray], llm: dict[str, Any],
               ablation: dict[str, Any] | None) -> dict[str, Any]:
    """One seed's figures: the LLM rows, the blend (lambda on validation), bias, rerank after retrieval."""
    lam, sweep = ev.choose_lambda(teacher_s["valid"], llm["valid"], q.valid, dcfg.blend_lambdas)
    lam_serve, sweep_serve = ev.choose_lambda(teacher_s["retrieval_valid"], llm["retrieval_valid"],
                                              q.retrieval_valid, dcfg.blend_lambdas, metric="HR@1")
    rt = q.retrieval_test
    rows = {"stage2_only": ev.cand_metrics(ablation["test"], q.test)} if ablation is not None else {}
    return rows | {
        "delrec": ev.cand_metrics(llm["test"], q.test),
        "blend": ev.cand_metrics(teacher_s["test"] + lam * llm["test"], q.test),
        "lambda": lam, "lambda_sweep_valid_hr1": sweep,
        "lambda_serve": lam_serve, "lambda_serve_sweep_valid_hr1": sweep_serve,
        "position_bias": ev.position_bias(llm["test"], llm["test_reversed"], q.test),
        "retrieval_before": ev.retrieval_metrics(None, rt),
        "retrieval_after": ev.retrieval_metrics(teacher_s["retrieval_test"] + lam_serve * llm["retrieval_test"], rt),
        "retrieval_llm_only": ev.retrieval_metrics(llm["retrieval_test"], rt),
        "valid_hr1": ev.cand_metrics(llm["valid"], q.valid)["HR@1"],
        "scores_info": llm["_info"],
    }


def teacher_cand_scores(tcfg: RunConfig, split: Split, q: Questions, seeds: list[int]) -> dict[int, dict[str, np.ndarray]]:
    """Per DELRec seed, the SASRec trained with the same seed scored on the cand20 questions: the SASRec row
    and the blend of seed s both use SASRec seed s, so "blend vs SASRec" compares like with like."""
    spec = tcfg.model_spec(tcfg.teacher.model)
    trained = {r["seed"] for r in pipeline.collect_results(tcfg, split, [spec.name])[spec.name]}
    missing = sorted(set(seeds) - trained)
    if missing:
        raise ValueError(f"teacher {tcfg.name}/{spec.name} has no trained seed {missing}: add them to its seeds")
    out = {}
    for seed in seeds:
        m = pipeline.load_trained(tcfg, spec, seed, split.n_items)
        out[seed] = {"test": ev.teacher_scores(m, q.test), "valid": ev.teacher_scores(m, q.valid)}
    return out


def _run_seed(dcfg: DelRecConfig, seed: int, split: Split, q: Questions, titles: list[str | None],
              teacher: SequentialRecommender, teacher_s: dict[str, np.ndarray], inputs: str,
              root: Path) -> tuple[dict[str, Any], Path, Path]:
    """Stage 1, stage 2, [the ablation], scores and figures of one seed."""
    s1 = stage1(dcfg, seed, split, q, titles, teacher, inputs, root)
    s2 = stage2(dcfg, seed, split, q, titles, s1, inputs, root)
    llm = score_stage(dcfg, q, titles, s1, s2, True, inputs, root)
    ablation = None
    if dcfg.ablation:
        ablation_dir = stage2(dcfg, seed, split, q, titles, None, inputs, root)
        ablation = score_stage(dcfg, q, titles, None, ablation_dir, False, inputs, root)
    row = _seed_rows(dcfg, q, teacher_s, llm, ablation)
    row["stage1"] = json.loads((s1 / "stage1.json").read_text())
    row["stage2"] = json.loads((s2 / "adapter" / "delrec_stage2.json").read_text())
    return row, s1, s2


def run_chain(cfg: RunConfig, ds: SequenceDataset, split: Split, command: str = "") -> DelRecRun:
    from training.llm.core.cache import fingerprint
    from training.llm.delrec.report import build_report

    dcfg = delrec_config(cfg)
    tcfg = teacher_config(cfg, dcfg)
    _, teacher, teacher_seed = ensure_teacher(tcfg, split)
    set_threads()
    topk = {s: pipeline.teacher_topk(teacher, h, teacher.max_len, dcfg.n_candidates)
            for s, h in (("valid", split.valid_history), ("test", split.test_history))}
    q = build_questions(dcfg, split, topk["valid"], topk["test"], cfg.eval.protocol_seed)
    titles: list[str | None] = [None] + [m.title for m in ds.items]
    inputs = inputs_fingerprint(split, titles, fingerprint(topk["test"], topk["valid"]))
    root = pipeline.output_dir(cfg) / "delrec"
    # the served setting (retrieval + rerank) uses the exported teacher, as the bundle does
    retrieval_s = {"retrieval_valid": ev.teacher_scores(teacher, q.retrieval_valid),
                   "retrieval_test": ev.teacher_scores(teacher, q.retrieval_test)}
    cand_s = teacher_cand_scores(tcfg, split, q, cfg.eval.seeds)
    zero = score_stage(dcfg, q, titles, None, None, False, inputs, root) if dcfg.zero_shot else None
    per_seed, s1_dirs, s2_dirs = {}, {}, {}
    for seed in cfg.eval.seeds:
        per_seed[seed], s1_dirs[seed], s2_dirs[seed] = _run_seed(
            dcfg, seed, split, q, titles, teacher, cand_s[seed] | retrieval_s, inputs, root)
    sasrec_rows = [ev.cand_metrics(cand_s[s]["test"], q.test) for s in cfg.eval.seeds]
    report = distributed.on_main(build_report, cfg, dcfg, q, sasrec_rows, ev.cand_metrics(zero["test"], q.test) if zero else None,
                          per_seed, zero["_info"] if zero else {}, command)
    best = max(per_seed, key=lambda s: (per_seed[s]["valid_hr1"], -s))
    return DelRecRun(cfg, dcfg, report, best, s1_dirs, s2_dirs, tcfg, teacher_seed)


def export(run: DelRecRun, ds: SequenceDataset, split: Split, out: Path) -> Path:
    """The service bundle: the teacher's encoder and index, plus the best seed's soft prompt and LoRA and the
    rerank spec (prompt, labels, the served lambda chosen on validation)."""
    from recbundle import LLMRef
    from training.export import export_bundle
    from training.llm.core.model import model_dir

    tcfg, seed = run.teacher_cfg, run.best_seed
    teacher = pipeline.load_trained(tcfg, tcfg.model_spec(tcfg.teacher.model), run.teacher_seed, split.n_items)
    row = run.report["per_seed"][str(seed)]
    spec = run.dcfg.spec(blend_lambda=row["lambda_serve"]).model_copy(
        update={"metrics": {"seed": seed, "cand20_test": row["delrec"], "blend_cand20_test": row["blend"],
                            "retrieval_before": row["retrieval_before"], "retrieval_after": row["retrieval_after"]}})
    base = None if not run.dcfg.base_model else model_dir(run.dcfg.encoder())
    llm = LLMRef(base=base, lora_adapters={"rerank": "llm/rerank"}, soft_prompt="llm/soft_prompt.npy", rerank=spec)
    extra = {"llm/rerank": run.stage2_dirs[seed] / "adapter", "llm/soft_prompt.npy": run.stage1_dirs[seed] / "soft_prompt.npy"}
    metrics = {"teacher_seed": run.teacher_seed, "delrec": run.report["rows"]}
    out = out if out.is_absolute() else REPO_ROOT / out
    return export_bundle(run.cfg, ds, teacher, tcfg.teacher.model, out, variant="delrec", metrics=metrics,
                         llm=llm, extra_files=extra)
