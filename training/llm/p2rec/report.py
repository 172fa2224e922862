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
    """One sentence with the like-for-like efficiency ratio (user-level epoch / instance-level epoch)."""
    eff = report.get("efficiency")
    if not eff or not eff.get("ratio"):
        return "Efficiency ratio: not measured (sft_timing_examples = 0)."
    u, i, sft = eff["user_level"], eff["instance_level"], eff["instance_sft"]
    return (
        f"Efficiency on {eff['device']}, like for like (same forward, same K-way head, same LoRA, batch size "
        f"and prompt settings, one process): user-level epoch / instance-level epoch = **{eff['ratio']:.4f}** "
        f"(≈ {1 / eff['ratio']:.3g}× less time per epoch). User-level: {eff['n_users']} examples × "
        f"{u['s_per_example']:.3f} s ({u['mean_tokens']:.0f} tokens) = {_secs(eff['user_level_epoch_s'])}; "
        f"instance-level: {eff['n_prefixes']} prefix examples × {i['s_per_example']:.3f} s "
        f"({i['mean_tokens']:.0f} tokens) = {_secs(eff['instance_level_epoch_s'])}; extrapolated from "
        f"{u['n_measured']} and {i['n_measured']} timed examples. For reference, title-generation SFT on the same prefixes (LM loss, "
        f"vocabulary logits at the title tokens only): {sft['s_per_example']:.3f} s per example, ratio "
        f"{eff['ratio_vs_sft']:.4f}."
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
    if "mean_shown_items" in tgt:
        lines.append(
            f"Training sequences hold {tgt['mean_train_items']:.1f} items on average; the prompt shows the newest "
            f"{tgt['mean_shown_items']:.1f}."
        )
    for name, cmp_ in tgt.get("vs_counts", {}).items():
        lines.append(
            f"`{name}` vs `counts`: mean Jensen-Shannon divergence {cmp_['js_mean']:.4f} nats, top-category "
            f"agreement {100 * cmp_['top1_agreement']:.1f} %."
        )
    if "vs_counts" not in tgt and tgt.get("counts_vs_teacher"):
        cmp_ = tgt["counts_vs_teacher"]
        lines.append(
            f"Counts vs teacher-predicted distribution: mean Jensen-Shannon divergence {cmp_['js_mean']:.4f} "
            f"nats, top-category agreement {100 * cmp_['top1_agreement']:.1f} %."
        )
    return " ".join(lines)


def target_variants_section(report: dict[str, Any]) -> str:
    """Each stage (a) target variant's held-out fit: KL to its own target next to two predictors without an
    LLM, and the next item's category NLL, the yardstick common to all variants."""
    variants = report.get("target_variants") or {}
    if not variants:
        return ""
    rows = []
    for name, v in variants.items():
        f = v["fit"]
        rows.append([
            f"`{name}`", f"{f['kl']:.4f}", f"{f['kl_prior']:.4f}", f"{f['kl_shown']:.4f}",
            f"{100 * (1 - f['kl'] / f['kl_prior']):.1f} %" if f["kl_prior"] else "–",
            f"{f['next_nll']:.4f}", f"{f['next_nll_prior']:.4f}", f"{f['next_nll_shown']:.4f}",
            f"{v['best_epoch']}",
        ])
    first = next(iter(variants.values()))["fit"]
    n = int(first["n_users"])
    picked = first.get("epoch_picked_on")
    share = f" ({100 * picked:.0f} % of them picked stage (a)'s epoch, a slight optimism)" if picked else ""
    return (
        "### Stage (a) target variants\n\n"
        f"Each variant tuned the same way (same users, epochs, LoRA and prompt); {n} users it was not tuned "
        f"on{share}. "
        "KL is against the variant's own target, so compare each row with its own baselines: the training "
        "users' mean target (prior) and the smoothed category histogram of the titles the prompt shows. The "
        "next-item NLL (the category of each held-out user's validation item) is the yardstick common to all "
        "rows.\n\n"
        + _table(
            ["target", "held-out KL", "KL prior", "KL shown-hist", "KL below prior", "next-item NLL",
             "NLL prior", "NLL shown-hist", "best epoch"],
            rows,
        )
    )


def regime_sections(regimes: dict[str, Any], baseline: str) -> list[str]:
    """Per regime: NDCG@10 / HR@10 under every protocol, and each variant's relative change."""
    from training.eval.report import markdown_table

    titles = {
        "all": "all test users",
        "long_tail": "long-tail targets (the least popular 80 % of items)",
        "short_history": "short histories (training sequences no longer than the 25th-percentile length)",
        "cold": "cold-start targets (held out of training; cold-start split)",
    }
    notes = {
        "cold": (
            "Read `full` here. A held-out item's row never trains, so plain SASRec keeps its small random "
            "initial row: it scores near 0, above trained rows of unpopular items that the full-softmax "
            "loss pushed below 0, and a sampled candidate list is mostly such items. Under `sampled100` and "
            "`cand20` an item the model knows nothing about therefore ranks high; under `full` it does not. "
            "Held-out items a user consumed before the test are masked and never drawn as negatives.\n\n"
        ),
    }
    blocks = []
    for name, entry in regimes.items():
        rows = entry["rows"]
        metrics = {p: ["NDCG@10", "HR@10"] for p in next(iter(rows.values()))}
        gains = "\n".join(gains_table(rows, baseline, m) for m in ("NDCG@10", "HR@10"))
        blocks.append(
            f"### Regime: {titles.get(name, name)} — {entry['n_users']} users\n\n{notes.get(name, '')}"
            + markdown_table(rows, metrics).replace("### ", "#### ")
            + f"\nRelative change against plain {baseline}:\n\n{gains}"
        )
    return (["## Regimes\n\nTest metrics restricted to the users of each regime (training/eval/regimes.py); "
             "mean ± std over the seeds."] + blocks) if blocks else []


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
    blocks = [
        f"## Relative change against the plain model ({GAIN_METRIC})\n\n{gains}",
        f"## P2Rec stages (base LLM: {base}){caveat}\n\n{efficiency_line(report)} Command: `{command}`.",
        _categories(report),
        _targets(report),
        target_variants_section(report),
        _stage_a(report),
        _stage_b(report),
        "Every stage's output, timing and config: p2rec/report.json (and each stage folder's _done.json).",
    ]
    return [b for b in blocks if b]
