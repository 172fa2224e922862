"""Aggregate per-seed results into mean ± std and write metrics.json, report.md and figures.

Shapes:
    per seed  {model: [{protocol: {metric: value}} for each seed]}
    results   {model: {protocol: {metric: {"mean": m, "std": s, "seeds": [v0, v1, ...]}}}}
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from training.eval.plots import Curves, plot_metric_bars, plot_training_curves
from training.eval.protocols import PROTOCOLS

logger = logging.getLogger(__name__)

Stat = dict[str, float | list[float]]  # {"mean": m, "std": s, "seeds": [...]}
Results = dict[str, dict[str, dict[str, Stat]]]


def aggregate(
    per_seed: Mapping[str, Sequence[Mapping[str, Mapping[str, float]]]],
    seeds: Sequence[int] | None = None,
) -> Results:
    """Mean and spread over training seeds of every (model, protocol, metric).

    "std" is the sample standard deviation (ddof=1) when there are at least two seeds, 0.0 for one seed.
    "seeds" keeps the per-seed values in input order. `seeds`, where given, must match the number of runs
    per model. Every run of a model must report the same protocols and metrics.
    """
    results: Results = {}
    for model, runs in per_seed.items():
        if not runs:
            raise ValueError(f"model {model!r} has no runs")
        if seeds is not None and len(runs) != len(seeds):
            raise ValueError(f"model {model!r} has {len(runs)} runs for {len(seeds)} seeds")
        results[model] = {}
        for protocol, metrics in runs[0].items():
            results[model][protocol] = {}
            for metric in metrics:
                try:
                    values = [float(run[protocol][metric]) for run in runs]
                except KeyError as err:
                    raise ValueError(f"{model}: {protocol}/{metric} missing in some run") from err
                std = float(np.std(values, ddof=1)) if len(values) > 1 else 0.0
                results[model][protocol][metric] = {
                    "mean": float(np.mean(values)),
                    "std": std,
                    "seeds": values,
                }
    return results


def write_metrics_json(results: Results, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(results, indent=2) + "\n")
    return path


def _protocols(results: Results) -> list[str]:
    seen: dict[str, None] = {}
    for by_protocol in results.values():
        seen.update(dict.fromkeys(by_protocol))
    return list(seen)


def _metric_columns(
    results: Results, protocol: str, metrics_per_protocol: Mapping[str, Sequence[str]] | None
) -> list[str]:
    """Explicit columns if given, else the protocol's own metrics that some model reported, else all."""
    if metrics_per_protocol is not None and protocol in metrics_per_protocol:
        return list(metrics_per_protocol[protocol])
    seen: dict[str, None] = {}
    for by_protocol in results.values():
        seen.update(dict.fromkeys(by_protocol.get(protocol, {})))
    known = [m for m in PROTOCOLS[protocol].metrics if m in seen] if protocol in PROTOCOLS else []
    return known or list(seen)  # flags such as "mask_history" stay out of known protocols' tables


def _mean(results: Results, model: str, protocol: str, metric: str) -> float | None:
    stat = results[model].get(protocol, {}).get(metric)
    return None if stat is None else float(stat["mean"])  # type: ignore[arg-type]


def markdown_table(results: Results, metrics_per_protocol: Mapping[str, Sequence[str]] | None = None) -> str:
    """One markdown table per protocol: rows = models, columns = metrics, cells "mean ± std".

    The best mean per column (higher is better for every metric here) is bold; ties are all bold.
    Missing cells read "–". Columns default to the protocol's own metrics (in its order) that at least
    one model reported; `metrics_per_protocol` overrides them per protocol.
    """
    blocks: list[str] = []
    for protocol in _protocols(results):
        columns = _metric_columns(results, protocol, metrics_per_protocol)
        spec = PROTOCOLS.get(protocol)
        lines = [f"### {protocol}", ""]
        if spec is not None:
            lines += [f"_{spec.description}._", ""]
        lines += ["| model | " + " | ".join(columns) + " |", "|---|" + "---:|" * len(columns)]
        best = {}
        for metric in columns:
            means = [
                m for m in (_mean(results, model, protocol, metric) for model in results) if m is not None
            ]
            best[metric] = max(means) if means else None
        for model, by_protocol in results.items():
            cells = []
            for metric in columns:
                stat = by_protocol.get(protocol, {}).get(metric)
                if stat is None:
                    cells.append("–")
                    continue
                cell = f"{stat['mean']:.4f} ± {stat['std']:.4f}"
                cells.append(f"**{cell}**" if stat["mean"] == best[metric] else cell)
            lines.append(f"| {model} | " + " | ".join(cells) + " |")
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks) + "\n"


def _n_seeds(results: Results) -> int:
    for by_protocol in results.values():
        for by_metric in by_protocol.values():
            for stat in by_metric.values():
                return len(stat["seeds"])  # type: ignore[arg-type]
    return 0


def write_report(
    results: Results,
    out_dir: str | Path,
    curves: Curves | None = None,
    title: str = "Evaluation report",
    command: str | None = None,
    report_name: str = "report.md",
    sections: Sequence[str] = (),
) -> list[Path]:
    """Write metrics.json, report.md, metrics_<protocol>.png and (with curves) training_curves.png.

    `command`, where given, is quoted in report.md as the command that produced the figures.
    `report_name` renames report.md; `sections` are markdown blocks placed after the tables.
    Returns the paths written.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written = [write_metrics_json(results, out_dir / "metrics.json")]
    figures: list[Path] = []
    for protocol in _protocols(results):
        columns = _metric_columns(results, protocol, None)
        figures.append(plot_metric_bars(results, protocol, columns, out_dir / f"metrics_{protocol}.png"))
    if curves:
        figures.append(plot_training_curves(curves, out_dir / "training_curves.png"))
    lines = [f"# {title}", ""]
    if command:
        lines += [f"Produced by: `{command}`", ""]
    lines += [
        f"Mean ± sample std (ddof=1) over {_n_seeds(results)} training seed(s); best mean per column in bold. "
        "Ranks break ties pessimistically. Sampled negatives are fixed per (protocol seed, stage, user), "
        "so every model and seed sees the same candidates.",
        "",
        markdown_table(results),
    ]
    for section in sections:
        lines += [section.rstrip("\n"), ""]
    lines += [f"![{fig.stem}]({fig.name})" for fig in figures]
    report = out_dir / report_name
    report.write_text("\n".join(lines) + "\n")
    written += [report, *figures]
    logger.info("wrote report to %s (%d files)", out_dir, len(written))
    return written


def publish_report(out_dir: Path, report_md: str, report_json: str, dest: Path, name: str) -> list[Path]:
    """Copy a run's small result files into `dest` (docs/results) as <name>.md, <name>.json and
    <name>-metrics_<protocol>.png, with the markdown's figure links rewritten to the new names."""
    import shutil

    dest.mkdir(parents=True, exist_ok=True)
    pairs = [(out_dir / report_md, dest / f"{name}.md"), (out_dir / report_json, dest / f"{name}.json")]
    pairs += [(p, dest / f"{name}-{p.name}") for p in sorted(out_dir.glob("metrics_*.png"))]
    for src, dst in pairs:
        shutil.copy2(src, dst)
    md = (dest / f"{name}.md").read_text()
    for src, dst in pairs[2:]:
        md = md.replace(f"]({src.name})", f"]({dst.name})")
    (dest / f"{name}.md").write_text(md)
    return [dst for _, dst in pairs]
