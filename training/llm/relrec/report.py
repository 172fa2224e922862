"""relrec_report.md / metrics.json / relrec_report.json / PNGs for a ReLRec run.

Rows (cand20, the protocol's own candidates): SASRec (per ReLRec seed, the teacher trained with that seed),
the zero-shot LLM (seed-independent), the plain next-item LoRA fine-tune (the ablation) and ReLRec. Language
keeping (Na et al., Findings of EMNLP 2024, their claim): held-out review perplexity of base / plain / ReLRec
with the per-seed ratio to the base LLM (target: ReLRec <= 1.10 x base) and the explanation log-likelihood
before and after. The label source is named in the title, so a metadata-fallback run cannot pass for one on
reviews.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

from training import pipeline
from training.config import RunConfig
from training.eval import aggregate, markdown_table, write_report
from training.llm.delrec.evaluate import mean_std
from training.llm.relrec.config import RelRecConfig
from training.llm.relrec.pipeline import language_row

REPORT_NAME = "relrec_report.md"
JSON_NAME = "relrec_report.json"
DRIFT_TARGET = 1.10  # ReLRec's held-out review perplexity may exceed the base LLM's by at most 10 %
FALLBACK = "fallback labels from genres/era/title words"
LEXICAL = {"reviews": "every stemmed content word of a phrase in the entity's held-out reviews",
           "metadata": "a user label's genre or decade on the user's held-out items"}
Rows = dict[str, list[dict[str, dict[str, float]]]]


def label_source_text(source: str, extractor: str | None) -> str:
    if source == "metadata":
        return f"{FALLBACK} (the dataset has no reviews)"
    return f"training-period reviews ({extractor} key phrases)"


def cand_rows(sasrec: Sequence[dict[str, float]], relrec: dict[str, Any]) -> Rows:
    """Rows shaped like metrics.json; rows a preset switched off (zero_shot, ablation) are left out."""
    seeds = list(relrec["per_seed"])
    rows: Rows = {"sasrec": [{"cand20": dict(r)} for r in sasrec]}
    if "zero_shot" in relrec["rows"]:
        rows["zero_shot"] = [{"cand20": dict(relrec["rows"]["zero_shot"])} for _ in seeds]
    for name in ("plain", "relrec"):
        if name in relrec["per_seed"][seeds[0]]:
            rows[name] = [{"cand20": relrec["per_seed"][s][name]["test"]} for s in seeds]
    return rows


def language_figures(relrec: dict[str, Any]) -> dict[str, dict[str, dict[str, Any]]]:
    """Per model (base, plain, relrec), mean/std/seeds of the review perplexity, its ratio to the base LLM,
    the explanation log-likelihood per token and its change against base. NaN perplexity = no reviews."""
    base = language_row(relrec["base_language"])

    def row(lang: dict[str, Any]) -> dict[str, float]:
        r = language_row(lang)
        return r | {"perplexity_vs_base": r["review_perplexity"] / base["review_perplexity"],
                    "explain_vs_base": r["explain_loglik"] - base["explain_loglik"]}

    out = {"base": mean_std([row(relrec["base_language"])])}
    for name in ("plain", "relrec"):
        runs = [r[name]["language"] for r in relrec["per_seed"].values() if name in r]
        if runs:
            out[name] = mean_std([row(lang) for lang in runs])
    return out


def _cell(stat: dict[str, Any], fmt: str = ".3f", sign: str = "") -> str:
    m = stat["mean"]
    return "n/a (no reviews)" if math.isnan(m) else f"{m:{sign}{fmt}} ± {stat['std']:{fmt}}"


def language_table(lang: dict[str, dict[str, dict[str, Any]]]) -> str:
    lines = ["| model | held-out review perplexity (lower is better) | × base | explanation log-lik / token "
             "(higher is better) | Δ vs base |", "|---|---:|---:|---:|---:|"]
    for name, f in lang.items():
        lines.append(f"| {name} | {_cell(f['review_perplexity'], '.2f')} | {_cell(f['perplexity_vs_base'])} | "
                     f"{_cell(f['explain_loglik'], '.4f')} | {_cell(f['explain_vs_base'], '.4f', '+')} |")
    return "\n".join(lines)


def _targets(agg: dict[str, Any], lang: dict[str, dict[str, dict[str, Any]]]) -> list[str]:
    def hr1(row: str) -> float:
        return float(agg[row]["cand20"]["HR@1"]["mean"]) if row in agg else float("nan")

    rr = lang["relrec"]["perplexity_vs_base"]["mean"]
    if math.isnan(rr):
        drift = ["- held-out review perplexity: n/a, the dataset has no reviews; the explanation "
                 "log-likelihood below is the language figure here"]
    else:
        verdict = "**met**" if rr <= DRIFT_TARGET else "**missed**"
        drift = [f"- ReLRec review perplexity / base = **{rr:.3f}** (target <= {DRIFT_TARGET:.2f}): {verdict}"]
        if "plain" in lang:
            pr = lang["plain"]["perplexity_vs_base"]["mean"]
            drift.append(f"- plain fine-tune review perplexity / base = **{pr:.3f}**: it drifts "
                         f"{100 * (pr - 1):+.1f} % from base, ReLRec {100 * (rr - 1):+.1f} %")
    ex = {n: lang[n]["explain_loglik"]["mean"] for n in lang}
    return [*drift,
            "- explanation log-likelihood per token, base -> plain -> ReLRec: "
            + " -> ".join(f"{ex[n]:.4f}" for n in ("base", "plain", "relrec") if n in ex),
            f"- cand20 HR@1: ReLRec {hr1('relrec'):.4f}, plain fine-tune {hr1('plain'):.4f}, "
            f"SASRec {hr1('sasrec'):.4f}, zero-shot {hr1('zero_shot'):.4f}"]


def _label_lines(relrec: dict[str, Any], quality: dict[str, Any]) -> list[str]:
    lab = relrec["labels"]
    text = label_source_text(lab["source"], relrec["config"].get("label_extractor"))
    st = lab["stats"]
    lines = [f"- source: {text}; coverage: {100 * st.get('item_coverage', 0):.0f} % of items, "
             f"{100 * st.get('user_coverage', 0):.0f} % of users; {st.get('mean_item_phrases', 0):.1f} "
             "phrases per item label",
             f"- item label examples: `{json.dumps(lab['examples']['item'], ensure_ascii=False)}`",
             f"- label quality, lexical ({LEXICAL[lab['source']]}), own entity vs another's held-out evidence (the "
             "gap is what a label says about its own entity; semantic figures: `python -m "
             "training.llm.relrec.quality`):"]
    for kind in ("item", "user"):
        q = quality.get(kind, {})
        if "lexical_label" in q:
            lines.append(f"  - {kind}: n={q['n']}, lexical label support {q['lexical_label']:.3f} vs control "
                         f"{q['lexical_label_control']:.3f} (gap {q['lexical_label'] - q['lexical_label_control']:+.3f})")
        else:
            why = q.get("note") or f"{q.get('n', 0)} labelled entities with held-out text"
            lines.append(f"  - {kind}: not scored ({why})")
    return lines


def _size_lines(cfg: RunConfig, rcfg: RelRecConfig, relrec: dict[str, Any]) -> list[str]:
    qs, s = relrec["questions"], relrec["per_seed"][str(min(int(k) for k in relrec["per_seed"]))]
    tune, review = s["relrec"]["tune"], relrec["base_language"]["review"]
    reduced = rcfg.max_users is not None or rcfg.eval_users is not None or len(cfg.eval.seeds) < 3
    lines = ["**REDUCED run**: a subset of users and/or fewer than 3 seeds; the benchmark presets "
             "(relrec-magazine, relrec-giftcards, relrec-ml100k) use every user and 3 seeds.", ""] if reduced else []
    return lines + [
        f"- training users: {qs['train_users']}; {rcfg.examples_per_user} next-item question(s) per user, "
        f"{rcfg.epochs} epoch(s), max_steps {rcfg.max_steps}, batch {rcfg.batch_size}; task examples "
        f"(seed {min(int(k) for k in relrec['per_seed'])}): `{json.dumps(tune.get('n_examples'))}`; "
        f"{tune.get('s_per_step', 0):.2f} s/step",
        f"- loss weights `{json.dumps(relrec['weights'])}` ({relrec['weighting']}); LoRA ({rcfg.lora_kind}) "
        f"r={rcfg.lora_r} on {rcfg.lora_targets}; history shown: {rcfg.history_items} titles; candidates: "
        f"{rcfg.n_candidates}",
        f"- evaluation: {qs['test']} test users (cand20), {qs['valid']} validation users; seeds "
        f"{relrec['seeds']}; base model `{rcfg.base_model or 'SmolLM2-135M-Instruct'}`",
        f"- perplexity: {review['docs']} held-out reviews, {review['tokens']} tokens" if review
        else "- perplexity: no held-out reviews",
        f"- ReLRec loss (first -> last steps): `{json.dumps(tune.get('first_loss'))}` -> "
        f"`{json.dumps(tune.get('last_loss'))}`"]


def _language_png(lang: dict[str, dict[str, dict[str, Any]]], out: Path) -> Path:
    from training.eval.plots import plot_metric_bars

    results = {n: {"language": {k: v for k, v in f.items() if k in ("perplexity_vs_base", "explain_vs_base")
                                and not math.isnan(v["mean"])}} for n, f in lang.items()}
    metrics = [m for m in ("perplexity_vs_base", "explain_vs_base") if m in results["relrec"]["language"]]
    return plot_metric_bars(results, "language", metrics, out / "metrics_language.png")


def build_report(cfg: RunConfig, rcfg: RelRecConfig, sasrec: Sequence[dict[str, float]], relrec: dict[str, Any],
                 quality: dict[str, Any], command: str = "") -> dict[str, Any]:
    command = command or f"python -m training relrec --preset {cfg.name}"
    agg = aggregate(cand_rows(sasrec, relrec))
    lang = language_figures(relrec)
    out = pipeline.output_dir(cfg)
    source = label_source_text(relrec["labels"]["source"], rcfg.label_extractor)
    sections = ["## Targets\n\n" + "\n".join(_targets(agg, lang)),
                "## Language keeping (mean ± std over seeds; base is seed-independent)\n\n" + language_table(lang)
                + "\n\n![language keeping](metrics_language.png)",
                "## Pseudo-labels\n\n" + "\n".join(_label_lines(relrec, quality)),
                "## Size of this run\n\n" + "\n".join(_size_lines(cfg, rcfg, relrec)),
                f"Produced by: `{command}`"]
    write_report(agg, out, title=f"{cfg.name}: ReLRec on cand20, mean ± std over seeds {sorted(cfg.eval.seeds)}; "
                 f"labels: {source}", command=command, report_name=REPORT_NAME, sections=sections)
    _language_png(lang, out)
    report = {"preset": cfg.name, "command": command, "label_source": source, "config": asdict(rcfg),
              "rows": agg, "language": lang, "drift_target": DRIFT_TARGET, "labels": relrec["labels"] | {
                  "quality": quality}, "questions": relrec["questions"], "per_seed": relrec["per_seed"],
              "base_language": relrec["base_language"], "table": markdown_table(agg) + "\n" + language_table(lang)}
    (out / JSON_NAME).write_text(json.dumps(report, indent=1, default=str))
    return report


def publish(cfg: RunConfig, dest: Path) -> list[Path]:
    """Copy the small result files to `dest` as relrec-<preset>.md / .json / .png (docs/results)."""
    from training.eval.report import publish_report

    name = cfg.name if cfg.name.startswith("relrec-") else f"relrec-{cfg.name}"
    return publish_report(pipeline.output_dir(cfg), REPORT_NAME, JSON_NAME, dest, name)