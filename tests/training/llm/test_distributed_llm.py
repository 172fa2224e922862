"""The LLM stages under torchrun (2 CPU processes, gloo) match one process: DELRec's chain on a tiny preset
(teacher, stage 1 soft prompt, stage 2 LoRA, scores) through the CLI, each global batch split across the ranks
and the per-task gradients averaged by weight (training/train/distributed.py `average_grads`), scoring split
and gathered. Dropout off, so both runs draw the same random numbers; the figures then agree up to the
floating-point order of the reductions."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

from scripts.procs import free_port

REPO = Path(__file__).resolve().parents[3]
SHARED = REPO.parent / "shared" / "data" / "ml-100k"
pytestmark = pytest.mark.skipif(not SHARED.is_dir(), reason="needs ../shared/data/ml-100k")


def _preset(tmp: Path) -> Path:
    cfg = yaml.safe_load((REPO / "configs" / "delrec-tiny.yaml").read_text())
    cfg["name"] = "delrec-ddp-check"
    cfg["models"]["sasrec"]["model"]["dropout"] = 0.0
    cfg["delrec"] |= {"lora_dropout": 0.0, "ablation": False, "zero_shot": False, "title_agreement_users": 0}
    cfg["eval"]["seeds"] = [0]
    path = tmp / "delrec-ddp.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def _run(cmd: list[str], preset: Path, out: Path) -> dict[str, Any]:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    args = [*cmd, "-m", "training", "delrec", "--preset", str(preset), "--output-dir", str(out)]
    done = subprocess.run(args, capture_output=True, text=True, timeout=900, env=env, cwd=REPO)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    (stage2,) = out.glob("delrec/delrec_stage2/*/adapter/delrec_stage2.json")
    scores = {p.parent.parent.name: np.load(p) for p in out.glob("delrec/delrec_scores/*/test.npy")}
    return {"log": done.stdout + done.stderr, "stage2": json.loads(stage2.read_text()), "scores": scores,
            "report": json.loads((out / "delrec_report.json").read_text())}


def test_two_processes_match_one(tmp_path: Path) -> None:
    preset = _preset(tmp_path)
    one = _run([sys.executable], preset, tmp_path / "one")
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", f"--master-port={free_port()}"]
    two = _run(torchrun, preset, tmp_path / "two")
    assert "rank 1 of 2 joined (gloo)" in two["log"]  # two processes really trained
    a, b = one["stage2"], two["stage2"]
    for task in a["first_loss"]:
        for key in ("first_loss", "last_loss"):
            assert abs(a[key][task] - b[key][task]) <= 1e-3 * abs(a[key][task]), (key, a, b)
    assert a["curves"]["valid_hr1"] == pytest.approx(b["curves"]["valid_hr1"], abs=1e-9)
    assert set(one["scores"]) == set(two["scores"]) and one["scores"]
    for name, scores in one["scores"].items():
        assert scores.shape == two["scores"][name].shape
        np.testing.assert_allclose(scores, two["scores"][name], atol=1e-3)
    assert one["report"]["per_seed"]["0"]["delrec"] == pytest.approx(two["report"]["per_seed"]["0"]["delrec"], abs=1e-9)
