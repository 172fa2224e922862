"""Figures for the evaluation report: training curves and per-protocol metric bars.

Uses matplotlib's object API (`Figure` + Agg canvas), never pyplot, so nothing touches global state or
needs a display. matplotlib is imported inside the functions to keep `training.eval` light to import.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

# {model: {seed: {"epoch": [...], "train_loss": [...], "valid_ndcg@10": [...]}}}
Curves = Mapping[str, Mapping[Any, Mapping[str, Sequence[float]]]]

_CURVE_PANELS = (("train_loss", "training loss"), ("valid_ndcg@10", "validation NDCG@10"))


def plot_training_curves(curves: Curves, path: str | Path) -> Path:
    """Loss and validation NDCG@10 vs epoch; one colour per model, one line style per seed."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    fig = Figure(figsize=(11, 4), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, len(_CURVE_PANELS))
    styles = ("-", "--", ":", "-.")
    for m, (model, by_seed) in enumerate(curves.items()):
        for s, (seed, curve) in enumerate(by_seed.items()):
            for ax, (key, _) in zip(axes, _CURVE_PANELS, strict=True):
                if key in curve and len(curve[key]):
                    epochs = curve.get("epoch", range(1, len(curve[key]) + 1))
                    ax.plot(
                        list(epochs),
                        list(curve[key]),
                        color=f"C{m % 10}",
                        linestyle=styles[s % len(styles)],
                        label=f"{model} (seed {seed})",
                    )
    for ax, (_, label) in zip(axes, _CURVE_PANELS, strict=True):
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
    axes[-1].legend(fontsize="small")
    path = Path(path)
    fig.savefig(path, dpi=120)
    return path


def plot_metric_bars(
    results: Mapping[str, Mapping[str, Mapping[str, Mapping[str, Any]]]],
    protocol: str,
    metrics: Sequence[str],
    path: str | Path,
) -> Path:
    """Grouped bars: one group per metric, one bar per model, sample std over seeds as error bars."""
    import numpy as np
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    models = [m for m in results if protocol in results[m]]
    fig = Figure(figsize=(max(6.0, 1.2 * len(metrics) * max(1, len(models)) / 2), 4), layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.subplots()
    x = np.arange(len(metrics))
    width = 0.8 / max(1, len(models))
    for i, model in enumerate(models):
        stats = [results[model][protocol].get(metric) for metric in metrics]
        means = [float(s["mean"]) if s else 0.0 for s in stats]
        stds = [float(s["std"]) if s else 0.0 for s in stats]
        ax.bar(x + (i - (len(models) - 1) / 2) * width, means, width, yerr=stds, capsize=3, label=model)
    ax.set_xticks(x, list(metrics))
    ax.set_ylabel("mean over seeds")
    ax.set_title(f"protocol: {protocol}")
    ax.grid(axis="y", alpha=0.3)
    if models:
        ax.legend(fontsize="small")
    path = Path(path)
    fig.savefig(path, dpi=120)
    return path
