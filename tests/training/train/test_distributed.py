"""Data-parallel SR training under torchrun (2 CPU processes, gloo) matches one process: the same global
batches are split across the ranks and DDP averages the gradients, so the loss curve and the metrics agree
up to floating-point reduction order (dropout off, so both runs draw the same random numbers)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from scripts.procs import free_port

SHARED = Path(__file__).resolve().parents[3].parent / "shared" / "data" / "ml-100k"
pytestmark = pytest.mark.skipif(not SHARED.is_dir(), reason="needs ../shared/data/ml-100k")

PRESET = {
    "name": "ddp-check",
    "data": {"dataset": "ml-100k", "k_core": 2, "max_users": 120},
    "train": {"epochs": 4, "batch_size": 64, "lr": 0.005, "patience": 10, "windows": "sliding"},
    "models": {"sasrec": {"model": {"max_len": 20, "dim": 16, "n_layers": 1, "n_heads": 1, "dropout": 0.0,
                                    "loss": "ce"}}},
    "eval": {"protocols": ["full"], "seeds": [0]},
    "teacher": {"model": "sasrec", "top_k": 10},
}  # fmt: skip


def _train(cmd: list[str], preset: Path, out: Path) -> dict[str, Any]:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    args = [*cmd, "-m", "training", "train", "--preset", str(preset), "--output-dir", str(out)]
    done = subprocess.run(args, capture_output=True, text=True, timeout=600, env=env)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    (result,) = out.glob("models/sasrec-*/seed0/result.json")
    return {"log": done.stdout + done.stderr, **json.loads(result.read_text())}


def test_two_processes_match_one(tmp_path: Path) -> None:
    preset = tmp_path / "ddp.yaml"
    preset.write_text(yaml.safe_dump({**PRESET, "output_dir": str(tmp_path / "unused")}))
    one = _train([sys.executable], preset, tmp_path / "one")
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", f"--master-port={free_port()}"]
    two = _train(torchrun, preset, tmp_path / "two")
    assert "rank 1 of 2 joined (gloo)" in two["log"]  # two processes really trained
    assert one["epochs_run"] == two["epochs_run"] == 4
    for a, b in zip(one["curves"]["train_loss"], two["curves"]["train_loss"], strict=True):
        assert abs(a - b) / a < 1e-3, (one["curves"], two["curves"])
    assert one["curves"]["train_loss"][-1] < one["curves"]["train_loss"][0]  # it did learn
    assert abs(one["best_valid_ndcg@10"] - two["best_valid_ndcg@10"]) < 0.01
    assert abs(one["test"]["full"]["NDCG@10"] - two["test"]["full"]["NDCG@10"]) < 0.01
