"""scripts/topology.py at test size: a real redis-server, two `python -m service` replicas sharing it, and HAProxy
in front (a fixture bundle, a few seconds of load). A session written through one replica reads back through
the other and through the balancer; a replica SIGKILLed under load costs no more failed requests than it held
(HAProxy replays them on the other replica); wrk through the balancer sees no errors.

Skipped where haproxy is not installed, except under `make test` (SEQREC_REQUIRE_VLLM=1, which also runs
scripts/ensure_system_deps.sh first) or CI: there a missing haproxy fails."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from scripts import topology
from tests.service.bundle_factory import build_bundle

REQUIRED = os.environ.get("SEQREC_REQUIRE_VLLM") == "1" or bool(os.environ.get("CI"))
pytestmark = pytest.mark.skipif(
    shutil.which("haproxy") is None and not REQUIRED,
    reason="haproxy is not installed (scripts/ensure_system_deps.sh, or apt-get install -y haproxy)",
)


def test_sessions_cross_replicas_and_a_killed_replica_costs_at_most_what_it_held(tmp_path: Path) -> None:
    bundle = tmp_path / "bundle"
    build_bundle(bundle, dim=32, max_len=50, n_items=200, seed=0)
    args = topology.parser().parse_args([
        "--bundle", str(bundle), "--work", str(tmp_path / "work"), "--sessions", "20", "--clients", "8",
        "--before", "2", "--after", "3", "--rounds", "1", "--duration", "1", "--warmup", "0", "--faults", "sigkill",
    ])  # fmt: skip
    s = topology.measure(args)

    sessions = s["sessions"]
    assert sessions["all_read_back"] and sessions["read_via_balancer"] == 20, sessions
    kill = s["sigkill"]
    assert kill["criterion_met"] and kill["requests_before_signal"] > 0, kill
    assert kill["haproxy_marked_down_after_s"] is not None and kill["returncode"] == -9, kill
    assert "r2" not in kill["served_by_after"] and kill["served_by_after"].get("r1", 0) > 0, kill
    assert all(run["errors"] == 0 for run in s["throughput"]["median"].values()), s["throughput"]
