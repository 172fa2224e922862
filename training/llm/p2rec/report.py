"""Markdown for p2rec_report.md: the variants' gains over plain SASRec and what each P2Rec stage did
(K sweep, counts vs teacher targets, stage (a) curves and timing, the SFT efficiency ratio, stage (b)).
Pure functions of `run_p2rec`'s report dict and the aggregated metrics."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from training.eval.report import Results

GAIN_METRIC = "NDCG@10"


def relative_gain(results: Results, model: str, baseline: str, protocol: str, metric: str) -> float | None:
    """(model mean - baseline mean) / baseline mean, or None when either is missing or the base is 0."""
    try:
        ours = float(results[model][protocol][metric]["mean"])  # type: ignore[arg-type]
        base = float(results[baseline][protocol][metric]["mean"])  # type: ignore[arg-type]
    except KeyError:
        return None
    return (ours - base) / base if base else None


def gains_table(results: Results, baseline: str, metric: str = GAIN_METRIC) -> str:
    """Rows = the other models, columns = protocols, cells = relative change of `metric` vs `baseline`."""
    protocols = list(results.get(baseline, {}))
    lines = [
        f"| model | {' | '.join(f'{p} {metric}' for p in protocols)} |",
        "|---|" + "---:|" * len(protocols),
    ]
    for model in results:
        if model == baseline:
            continue
        cells = []
        for protocol in protocols:
            gain = relative_gain(results, model, baseline, protocol, metric)
            cells.append("–" if gain is None else f"{100 * gain:+.1f} %")
        lines.append(f"| {model} | {' | '.join(cells)} |")
    return "\n".join(lines) + "\n"


def _secs(x: float) -> str:
    return f"{x:,.0f} s" if x >= 10 else f"{x:.2g} s"


def efficiency_line(report: dict[str, Any]) -> str:
    """One sentence with the SFT efficiency ratio (user-level epoch time / instance-level epoch time)."""
    eff = report.get("efficiency")
    if not eff or not eff["ratio"]:
        return "SFT efficiency ratio: not measured (sft_timing_examples = 0)."
    sft = report["sft_baseline"]
    return (
        f"SFT efficiency ratio (user-level epoch / instance-level epoch) = **{eff['ratio']:.4f}** "
        f"(≈ {1 / eff['ratio']:.3g}× less time per epoch): user-level {_secs(eff['user_level_epoch_s'])} "
        f"for one example per user; instance-level {_secs(eff['instance_level_epoch_s'])} for "
        f"{sft['n_prefixes']} prefix examples, extrapolated from {sft['n_measured']} measured "
        f"({sft['s_per_example']:.3f} s each). Same LoRA, batch size and prompt settings on both sides."
    )


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---:|" * len(header)]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def _categories(report: dict[str, Any]) -> str:
    cats, cfg = report["categories"], report["config"]
    rows = [
        [f"{int(r['k'])}", f"{r['inertia']:.2f}", f"{r['entropy']:.3f}", f"{r['min_size']:.0f}",
         f"{r['max_size']:.0f}", f"{r['empty']:.0f}"]
        for r in cats.get("sweep", [])
    ]
    sweep = _table(["K", "inertia", "balance entropy", "min size", "max size", "empty"], rows) if rows else ""
    return (
        f"### Latent categories\n\nfaiss k-means over the teacher's item table, K = {cats['k']} "
        f"(spherical: {cfg['spherical']}; balance entropy {cats['entropy']:.3f}). K sweep (reported, "
        f"not used to pick K: the paper's K is not available offline, ours is a config choice):\n\n{sweep}"
    )


def _targets(report: dict[str, Any]) -> str:
    tgt = report["targets"]
    lines = [f"### User targets\n\nTrained on: `{tgt['target']}`."]
    cmp_ = tgt.get("counts_vs_teacher")
    if cmp_:
        lines.append(
            f"Counts vs teacher-predicted distribution: mean Jensen-Shannon divergence {cmp_['js_mean']:.4f} "
            f"nats, top-category agreement {100 * cmp_['top1_agreement']:.1f} %."
        )
    return " ".join(lines)


def _stage_a(report: dict[str, Any]) -> str:
    a = report["stage_a"]
    c = a["curves"]
    rows = [
        [f"{e}", f"{loss:.4f}", f"{kl:.4f}", f"{w:.1f}"]
        for e, loss, kl, w in zip(c["epoch"], c["train_loss"], c["valid_kl"], c["epoch_wall_s"], strict=True)
    ]
    return (
        f"### Stage (a): user-level LoRA tuning\n\n{a['n_users']} users ({a['n_train']} train, {a['n_valid']} "
        f"held out), {a['mean_prompt_tokens']:.0f} prompt tokens on average, {a['tokens_per_s']:.0f} tokens/s, "
        f"{a['s_per_example']:.3f} s per user; best epoch {a['best_epoch']}.\n\n"
        + _table(["epoch", "train loss", "held-out KL", "wall s"], rows)
    )


def _stage_b(report: dict[str, Any]) -> str:
    b = report["stage_b"]
    return (
        f"### Stage (b): item augmentation\n\nEvery catalogue item ({b['n_items']}, with or without training "
        f"interactions) as a one-item virtual user: hidden {b['hidden']} → PCA {b['aug_dim']} dims "
        f"({100 * b['explained_variance']:.1f} % variance kept), {b['s_per_item']:.4f} s per item."
    )


def p2rec_sections(report: dict[str, Any], gains: str, command: str) -> list[str]:
    """The markdown blocks that follow the metric tables in p2rec_report.md."""
    base = report["config"]["base_model"] or "SmolLM2-135M-Instruct"
    caveat = (
        "\n\n**base model `random-tiny`: a randomly initialised test device; these numbers check the "
        "plumbing and say nothing about P2Rec.**"
        if base == "random-tiny"
        else ""
    )
    return [
        f"## Relative change against the plain model ({GAIN_METRIC})\n\n{gains}",
        f"## P2Rec stages (base LLM: {base}){caveat}\n\n{efficiency_line(report)} Command: `{command}`.",
        _categories(report),
        _targets(report),
        _stage_a(report),
        _stage_b(report),
        "Every stage's output, timing and config: p2rec/report.json (and each stage folder's _done.json).",
    ]
