"""delrec_report.md / metrics.json / delrec_report.json / PNGs for a DELRec run.

Rows (cand20, the same candidates SASRec is scored on): SASRec (per DELRec seed, the teacher trained with that
seed; the blend of that seed uses it too), the zero-shot LLM (same
prompt, no soft prompt, no LoRA; seed-independent), stage 2 without the soft prompt (ablation), DELRec, and
the blend (teacher score + lambda * LLM log-probability, lambda chosen on validation HR@1). The service's
setting: the teacher's full-catalogue top-20 reranked (full-protocol HR@10 / NDCG@10 before and after).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from training import pipeline
from training.config import RunConfig
from training.eval import aggregate, markdown_table, write_report
from training.llm.delrec.config import DelRecConfig
from training.llm.delrec.pipeline import Questions

REPORT_NAME = "delrec_report.md"
ROWS = ("sasrec", "zero_shot", "stage2_only", "delrec", "blend")
RERANK_ROWS = {"retrieval_before": "teacher top-20 (retrieval order)",
               "retrieval_after": "DELRec blend rerank", "retrieval_llm_only": "DELRec LLM-only rerank"}


def _per_seed_rows(sasrec: Sequence[dict[str, float]], zero: dict[str, float] | None,
                   per_seed: dict[int, dict[str, Any]]) -> dict[str, list[dict[str, dict[str, float]]]]:
    """Rows a preset switched off (zero_shot, ablation) are left out, not filled."""
    seeds = sorted(per_seed)
    rows: dict[str, list[dict[str, dict[str, float]]]] = {"sasrec": [{"cand20": dict(r)} for r in sasrec]}
    if zero is not None:
        rows["zero_shot"] = [{"cand20": dict(zero)} for _ in seeds]
    for name in ("stage2_only", "delrec", "blend"):
        if name in per_seed[seeds[0]]:
            rows[name] = [{"cand20": per_seed[s][name]} for s in seeds]
    for key, label in RERANK_ROWS.items():
        rows[label] = [{"rerank_top20": per_seed[s][key]} for s in seeds]
    return rows


def _mean(per_seed: dict[int, dict[str, Any]], *path: str) -> float:
    vals = []
    for row in per_seed.values():
        v: Any = row
        for p in path:
            v = v[p]
        vals.append(float(v))
    return float(np.mean(vals))


def _targets(agg: dict[str, Any]) -> list[str]:
    def m(row: str, metric: str) -> float:
        return float(agg[row]["cand20"][metric]["mean"])

    zs = m("zero_shot", "HR@1") if "zero_shot" in agg else 0.0
    dr, bl, sr = m("delrec", "HR@1"), m("blend", "HR@1"), m("sasrec", "HR@1")
    ratio = f"**{dr / zs:.2f}x**" if zs else "n/a (zero-shot HR@1 is 0, or the row is off in this preset)"
    return [
        f"- DELRec HR@1 / zero-shot HR@1 = {dr:.4f} / {zs:.4f} = {ratio} (target >= 3x)",
        f"- blend HR@1 vs SASRec = {bl:.4f} vs {sr:.4f}: **{100 * (bl / sr - 1):+.1f} %** (target >= +3 %)",
        f"- DELRec alone vs SASRec = {dr:.4f} vs {sr:.4f}: **{100 * (dr / sr - 1):+.1f} %** (stretch: >= 0 %)",
    ]


def _sections(cfg: DelRecConfig, q: Questions, per_seed: dict[int, dict[str, Any]], agg: dict[str, Any],
              zero_info: dict[str, Any], command: str) -> list[str]:
    s = per_seed[min(per_seed)]
    agree = [r["scores_info"].get("title_agreement") for r in per_seed.values()]
    agree = [a for a in agree if a]
    lines = ["## Targets (ML-100K issue targets; read them against the size of this run)", "", *_targets(agg), "",
             "## Size of this run", "",
             f"- training users: {len(q.train_users)}; stage 1: {cfg.stage1_examples_per_user} RPS + "
             f"{cfg.stage1_examples_per_user} TA questions per user, {cfg.stage1_epochs} epoch(s); stage 2: "
             f"{cfg.stage2_examples_per_user} questions per user, {cfg.stage2_epochs} epoch(s)",
             f"- soft prompt: {cfg.n_soft_tokens} vectors; LoRA ({cfg.lora_kind}) r={cfg.lora_r} on {cfg.lora_targets}; "
             f"history shown: {cfg.history_items} titles; candidates: {cfg.n_candidates}",
             f"- evaluation: {len(q.test)} test users (cand20), {len(q.valid)} validation users; base model: "
             f"`{cfg.base_model or 'SmolLM2-135M-Instruct'}`",
             f"- LLM scoring cost: {_mean(per_seed, 'scores_info', 's_per_question'):.3f} s per question (one prefill), "
             f"zero-shot {zero_info.get('s_per_question', float('nan')):.3f} s",
             "", "## Position bias (DELRec, same users, candidates reversed)", "",
             f"- HR@1 shown order {_mean(per_seed, 'position_bias', 'HR@1'):.4f}, reversed "
             f"{_mean(per_seed, 'position_bias', 'HR@1_reversed'):.4f}; the top item changes for "
             f"{100 * _mean(per_seed, 'position_bias', 'top1_changed_share'):.1f} % of users (mean over seeds)",
             "", "## Blend weight", "",
             f"- cand20 lambda per seed (validation HR@1): {[r['lambda'] for r in per_seed.values()]}; served "
             f"(validation top-20 rerank): {[r['lambda_serve'] for r in per_seed.values()]}",
             f"- sweep, seed {min(per_seed)}: `{json.dumps(s['lambda_sweep_valid_hr1'])}`"]
    if agree:
        lines += ["", "## Label scores vs full title log-likelihood", "",
                  f"- {agree[0]['users']} test users per seed: top-1 agreement "
                  f"{np.mean([a['top1_agreement'] for a in agree]):.3f}, mean Spearman "
                  f"{np.mean([a['spearman_mean'] for a in agree]):.3f}; HR@1 labels "
                  f"{np.mean([a['label_hr1'] for a in agree]):.3f} vs titles {np.mean([a['title_hr1'] for a in agree]):.3f}; "
                  f"title scoring {np.mean([a['title_s_per_question'] for a in agree]):.2f} s per question "
                  "(C continuations on a shared prefix) against one prefill for the labels"]
    lines += ["", "## Training", "",
              f"- stage 1 loss (first -> last steps): `{json.dumps(s['stage1'].get('first_loss'))}` -> "
              f"`{json.dumps(s['stage1'].get('last_loss'))}`; mean dynamic weights "
              f"`{json.dumps(s['stage1'].get('mean_weight'))}`; {s['stage1'].get('s_per_step', 0):.2f} s/step",
              f"- stage 2 loss: `{json.dumps(s['stage2'].get('first_loss'))}` -> "
              f"`{json.dumps(s['stage2'].get('last_loss'))}`; {s['stage2'].get('s_per_step', 0):.2f} s/step",
              "", f"Produced by: `{command}`"]
    return ["\n".join(lines)]


def build_report(cfg: RunConfig, dcfg: DelRecConfig, q: Questions, sasrec: Sequence[dict[str, float]],
                 zero: dict[str, float] | None, per_seed: dict[int, dict[str, Any]], zero_info: dict[str, Any],
                 command: str = "") -> dict[str, Any]:
    command = command or f"python -m training delrec --preset {cfg.name}"
    rows = _per_seed_rows(sasrec, zero, per_seed)
    cand = aggregate({k: v for k, v in rows.items() if k in ROWS})
    rerank = aggregate({k: v for k, v in rows.items() if k not in ROWS})
    agg = cand | rerank
    out = pipeline.output_dir(cfg)
    rerank_md = ("## Rerank after retrieval (the service's setting)\n\nThe teacher's full-catalogue top-20 "
                 "(history masked) for the same test users, reranked; a target retrieval missed stays a miss.\n\n"
                 + markdown_table(rerank))
    write_report(cand, out, title=f"{cfg.name}: DELRec on cand20 and as a reranker, mean ± std over seeds "
                 f"{sorted(per_seed)}", command=command, report_name=REPORT_NAME,
                 sections=[rerank_md, *_sections(dcfg, q, per_seed, agg, zero_info, command)])
    report = {"preset": cfg.name, "command": command, "config": asdict(dcfg), "rows": agg,
              "per_seed": {str(k): v for k, v in per_seed.items()}, "zero_shot_info": zero_info,
              "table": markdown_table(cand) + "\n" + markdown_table(rerank)}
    (out / "delrec_report.json").write_text(json.dumps(report, indent=1, default=str))
    return report


def publish(cfg: RunConfig, dest: Path) -> list[Path]:
    """Copy the small result files to `dest` as delrec-<preset>.md / .json / .png (docs/results)."""
    from training.eval.report import publish_report

    name = cfg.name if cfg.name.startswith("delrec-") else f"delrec-{cfg.name}"
    return publish_report(pipeline.output_dir(cfg), REPORT_NAME, "delrec_report.json", dest, name)