"""Benchmark: SASRec training wall time and peak memory on a preset (default ML-100K), per seed.

    python scripts/bench_sasrec.py --preset ml-100k --seeds 0 1 2 --out runs/bench/sasrec_train.json

Trains from scratch (no cache), with the preset's SASRec config and early stopping, and records wall time,
epochs to convergence, seconds per epoch, peak resident memory and the test NDCG@10/HR@10 (full).
"""

from __future__ import annotations

import argparse
import json
import logging
import platform
import resource
import statistics
import time
from pathlib import Path

import torch

from training import pipeline
from training.config import load_config
from training.eval import evaluate
from training.models import build_model
from training.train import fit_model, make_score_fn


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--preset", default="ml-100k")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--out", default="runs/bench/sasrec_train.json")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    cfg = load_config(args.preset)
    _, split = pipeline.prepare_stage(cfg)
    spec = cfg.model_spec("sasrec")
    rows = []
    for seed in args.seeds:
        model = build_model("sasrec", split.n_items, spec.params)
        t0 = time.perf_counter()
        res = fit_model(model, split, spec.train, seed, desc=f"bench/seed{seed}")
        wall = time.perf_counter() - t0
        test = evaluate(make_score_fn(model, model.max_len), split, "full", "test")
        rows.append({"seed": seed, "wall_s": round(wall, 1), "epochs_run": res.epochs_run,
                     "best_epoch": res.best_epoch, "s_per_epoch": round(wall / max(res.epochs_run, 1), 2),
                     "test_full_NDCG@10": round(test["NDCG@10"], 4), "test_full_HR@10": round(test["HR@10"], 4)})
        print(json.dumps(rows[-1]), flush=True)
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    report = {
        "preset": args.preset, "params": spec.params, "torch_threads": torch.get_num_threads(),
        "cpu": platform.processor() or platform.machine(), "runs": rows,
        "median_wall_s": statistics.median(r["wall_s"] for r in rows), "peak_rss_mib": round(peak_mib, 1),
        "command": f"python scripts/bench_sasrec.py --preset {args.preset} --seeds {' '.join(map(str, args.seeds))}",
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=1))
    print(json.dumps({k: v for k, v in report.items() if k != "runs"}, indent=1))


if __name__ == "__main__":
    main()
