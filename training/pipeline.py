"""The stages of a preset run: prepare → train (+ test evaluation) per model and seed → report → teacher
export. Each stage writes under `output_dir` and is skipped when its output for the same config exists,
so an interrupted run resumes."""

from __future__ import annotations

import json
import logging
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch

from training.config import REPO_ROOT, ModelSpec, RunConfig, TrainConfig, stable_hash
from training.data import DataError, leave_one_out, load_dataset, prepare
from training.data.split import cold_item_split
from training.data.types import SequenceDataset, Split
from training.eval import aggregate, evaluate_all, markdown_table, write_report
from training.models import SequentialRecommender, build_model
from training.train import distributed, fit_model, left_pad, make_score_fn, seed_everything

log = logging.getLogger(__name__)


def output_dir(cfg: RunConfig) -> Path:
    p = Path(cfg.output_dir)
    return p if p.is_absolute() else REPO_ROOT / p


def _split(cfg: RunConfig, ds: SequenceDataset) -> Split:
    if cfg.data.cold_item_frac:
        return cold_item_split(ds, cfg.data.cold_item_frac, cfg.data.cold_seed)
    return leave_one_out(ds)


def prepare_stage(cfg: RunConfig) -> tuple[SequenceDataset, Split]:
    """Under torchrun rank 0 prepares (and caches) the data first; the others then read its cache."""
    world = distributed.current()
    if not world.is_main:
        world.barrier()
    out = _prepare(cfg)
    if world.is_main:
        world.barrier()
    return out


def _prepare(cfg: RunConfig) -> tuple[SequenceDataset, Split]:
    d = cfg.data
    out = output_dir(cfg) / "prepared" / f"{d.dataset}-{cfg.data_hash()}"
    try:
        ds = load_dataset(out)
        log.info("prepared %s: cached in %s", d.dataset, out)
        return ds, _split(cfg, ds)
    except DataError:
        pass
    ds = prepare(
        d.dataset,
        data_dir=Path(d.data_dir).expanduser() if d.data_dir else None,
        cache_dir=Path(d.cache_dir).expanduser(),
        out_dir=out,
        k_core=d.k_core,
        min_rating=d.min_rating,
        max_users=d.max_users,
    )
    return ds, _split(cfg, ds)


def format_stats(ds: SequenceDataset) -> str:
    keys = ("users", "items", "interactions", "mean_seq_len", "median_seq_len", "density")
    return f"{ds.name}: " + ", ".join(f"{k}={ds.stats[k]:.4g}" for k in keys if k in ds.stats)


def aug_fingerprint(aug: torch.Tensor) -> str:
    """Identity of an augmented item table, for the cache keys of the models trained on it."""
    from training.llm.core.cache import fingerprint

    return fingerprint(aug.detach().float().cpu().numpy())


def train_key(train: TrainConfig) -> dict[str, Any]:
    """The training settings that define a model (the device does not)."""
    key = asdict(train)
    key.pop("device")
    return key


def _model_hash(cfg: RunConfig, spec: ModelSpec, aug: torch.Tensor | None = None) -> str:
    key = {"data": cfg.data_hash(), "model": spec.name, "params": spec.params, "train": train_key(spec.train),
           "eval": asdict(cfg.eval)}
    if aug is not None:  # only then, so the folders of models without a table keep their names
        key["aug"] = aug_fingerprint(aug)
    if spec.arch is not None:  # likewise
        key["arch"] = spec.arch
    return stable_hash(key)


def model_dir(cfg: RunConfig, spec: ModelSpec, seed: int, aug: torch.Tensor | None = None) -> Path:
    """`aug`: the augmented item table a P2Rec model (sasrec_adapter, sasrec_init) is trained on."""
    return output_dir(cfg) / "models" / f"{spec.name}-{_model_hash(cfg, spec, aug)}" / f"seed{seed}"


def load_trained(
    cfg: RunConfig, spec: ModelSpec, seed: int, n_items: int, aug: torch.Tensor | None = None
) -> SequentialRecommender:
    model = build_model(spec.kind, n_items, spec.params, aug)
    state = torch.load(model_dir(cfg, spec, seed, aug) / "model.pt", map_location="cpu", weights_only=True)
    model.load_state_dict(state)
    model.eval()
    return model


def train_one(
    cfg: RunConfig, spec: ModelSpec, seed: int, split: Split, aug: torch.Tensor | None = None
) -> dict[str, Any]:
    """Fit + test-evaluate one (model, seed); cached in result.json next to the weights."""
    mdir = model_dir(cfg, spec, seed, aug)
    result_path = mdir / "result.json"
    if result_path.is_file():
        log.info("%s seed %d: cached result in %s", spec.name, seed, mdir)
        return dict(json.loads(result_path.read_text()))
    world = distributed.current()
    mdir.mkdir(parents=True, exist_ok=True)
    seed_everything(seed)
    model = build_model(spec.kind, split.n_items, spec.params, aug)
    res = fit_model(model, split, spec.train, seed, checkpoint=None, desc=f"{spec.name}/seed{seed}")
    if not world.is_main:  # under torchrun: rank 0 evaluates and writes; the others read what it wrote
        world.barrier()
        return dict(json.loads(result_path.read_text()))
    torch.save(model.state_dict(), mdir / "model.pt")
    score_fn = make_score_fn(model, model.max_len, spec.train.eval_batch_size)
    test = evaluate_all(score_fn, split, cfg.eval.protocols, stage="test", protocol_seed=cfg.eval.protocol_seed)
    result = {
        "model": spec.name,
        "seed": seed,
        "params": spec.params,
        "train": asdict(spec.train),
        "best_epoch": res.best_epoch,
        "epochs_run": res.epochs_run,
        "best_valid_ndcg@10": res.best_valid,
        "wall_s": res.wall_s,
        "curves": res.curves,
        "test": test,
    }
    if aug is not None:
        result["aug"] = aug_fingerprint(aug)  # which augmented table (P2Rec stage b output) it trained on
    (mdir / "config.json").write_text(json.dumps({"name": spec.name, "arch": spec.kind, "n_items": split.n_items, **spec.params}))
    result_path.write_text(json.dumps(result, indent=1))
    world.barrier()
    return result


def regime_result(
    cfg: RunConfig, spec: ModelSpec, seed: int, split: Split, aug: torch.Tensor | None = None
) -> dict[str, Any]:
    """Test metrics per regime (training/eval/regimes.py) of a trained (model, seed); cached in regimes.json
    next to its weights, so models trained before regimes existed are evaluated once, not retrained."""
    from training.eval.regimes import DEFINITION, regime_metrics

    path = model_dir(cfg, spec, seed, aug) / "regimes.json"
    key = {"definition": DEFINITION, "protocols": list(cfg.eval.protocols), "seed": cfg.eval.protocol_seed}
    if path.is_file() and (saved := json.loads(path.read_text())).get("key") == key:
        return dict(saved["result"])
    model = load_trained(cfg, spec, seed, split.n_items, aug)
    score_fn = make_score_fn(model, model.max_len, spec.train.eval_batch_size)
    result = regime_metrics(score_fn, split, cfg.eval.protocols, protocol_seed=cfg.eval.protocol_seed)
    path.write_text(json.dumps({"key": key, "result": result}, indent=1))
    return result


def train_stage(cfg: RunConfig, split: Split, models: list[str] | None = None) -> dict[str, list[dict[str, Any]]]:
    results: dict[str, list[dict[str, Any]]] = {}
    for spec in cfg.models:
        if models and spec.name not in models:
            continue
        results[spec.name] = [train_one(cfg, spec, seed, split) for seed in cfg.eval.seeds]
    return results


def collect_results(
    cfg: RunConfig, split: Split, models: list[str] | None = None
) -> dict[str, list[dict[str, Any]]]:
    """Saved per-seed results of every trained (model, seed); re-evaluates a model whose weights exist
    but whose result is missing is not attempted: train it."""
    results: dict[str, list[dict[str, Any]]] = {}
    for spec in cfg.models:
        if models and spec.name not in models:
            continue
        paths = [model_dir(cfg, spec, seed) / "result.json" for seed in cfg.eval.seeds]
        missing = [str(p.parent) for p in paths if not p.is_file()]
        if missing:
            raise FileNotFoundError(f"{spec.name}: no saved result in {missing}; run `python -m training train` first")
        results[spec.name] = [json.loads(p.read_text()) for p in paths]
    return results


def report_stage(cfg: RunConfig, results: dict[str, list[dict[str, Any]]]) -> str:
    agg = aggregate({m: [r["test"] for r in runs] for m, runs in results.items()}, cfg.eval.seeds)
    curves = {m: {r["seed"]: r["curves"] for r in runs} for m, runs in results.items()}
    out = output_dir(cfg)
    write_report(agg, out, curves=curves, title=f"{cfg.name}: test metrics, mean ± std over seeds {cfg.eval.seeds}")
    table = markdown_table(agg)
    summary = {
        m: {"wall_s": [r["wall_s"] for r in runs], "best_epoch": [r["best_epoch"] for r in runs]}
        for m, runs in results.items()
    }
    (out / "training_summary.json").write_text(json.dumps(summary, indent=1))
    return table


def export_teacher(cfg: RunConfig, split: Split, seed: int | None = None) -> Path:
    """Per user, the teacher's top-k next items (history masked) for the validation history (what the LLM
    stages train on) and the test history, plus its item embedding table. LLM stages read these."""
    spec = cfg.model_spec(cfg.teacher.model)
    seed = cfg.eval.seeds[0] if seed is None else seed
    model = load_trained(cfg, spec, seed, split.n_items)
    out = output_dir(cfg) / "teacher"
    out.mkdir(parents=True, exist_ok=True)
    for stage, hists in (("valid", split.valid_history), ("test", split.test_history)):
        np.save(out / f"topk_{stage}.npy", teacher_topk(model, hists, model.max_len, cfg.teacher.top_k))
    np.save(out / "item_embeddings.npy", model.item_table().detach().float().numpy())
    torch.save(model.state_dict(), out / "model.pt")
    meta = {"model": spec.name, "seed": seed, "params": spec.params, "n_items": split.n_items, "top_k": cfg.teacher.top_k}
    (out / "teacher.json").write_text(json.dumps(meta, indent=1))
    return out


@torch.no_grad()
def teacher_topk(model: SequentialRecommender, histories: list[np.ndarray], max_len: int, k: int) -> np.ndarray:
    tops = []
    for i in range(0, len(histories), 512):
        chunk = histories[i : i + 512]
        scores = model.score_all(torch.from_numpy(left_pad(chunk, max_len))).clone()
        scores[:, 0] = float("-inf")
        for row, h in enumerate(chunk):
            scores[row, torch.from_numpy(np.asarray(h, dtype=np.int64))] = float("-inf")
        tops.append(scores.topk(k, dim=1).indices.numpy())
    return np.concatenate(tops)


def pick_run(name: str, runs: list[dict[str, Any]], seed: int | None) -> dict[str, Any]:
    """The run of `seed`, or without one the run with the best validation NDCG@10."""
    if seed is None:
        return max(runs, key=lambda r: r["best_valid_ndcg@10"])
    chosen = next((r for r in runs if r["seed"] == seed), None)
    if chosen is None:
        raise ValueError(f"{name} has no trained seed {seed}; trained: {[r['seed'] for r in runs]}")
    return chosen


def export_stage(
    cfg: RunConfig, ds: SequenceDataset, split: Split, model: str | None, seed: int | None, out: Path
) -> Path:
    """Bundle the chosen model; without a seed, the one with the best validation NDCG@10."""
    from training.export import export_bundle

    spec = cfg.model_spec(model or cfg.teacher.model)
    if spec in cfg.p2rec_models:
        raise ValueError(f"{spec.name} trains on P2Rec's table: export it with `python -m training p2rec --export-to`")
    runs = collect_results(cfg, split, [spec.name])[spec.name]
    chosen = pick_run(spec.name, runs, seed)
    trained = load_trained(cfg, spec, chosen["seed"], split.n_items)
    metrics_path = output_dir(cfg) / "metrics.json"
    aggregated = json.loads(metrics_path.read_text()).get(spec.name, {}) if metrics_path.is_file() else {}
    metrics = {"seed": chosen["seed"], "test": chosen["test"], "over_seeds": aggregated,
               "best_valid_ndcg@10": chosen["best_valid_ndcg@10"]}
    out = out if out.is_absolute() else REPO_ROOT / out
    return export_bundle(cfg, ds, trained, spec.name, out, metrics=metrics)
