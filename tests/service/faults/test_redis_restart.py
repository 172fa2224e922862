"""Redis SIGKILLed and restarted under a small load (scripts/faults/redis_restart.py, the fault campaign's
first fault, at test size): a real redis-server with AOF (appendfsync always), the service as a real process.
Every acknowledged session write survives, inline-history requests are answered degraded during the outage,
and the service recovers without a restart."""

from __future__ import annotations

from pathlib import Path

from scripts.faults.redis_restart import campaign


def test_sessions_survive_a_redis_kill_and_the_service_recovers(tmp_path: Path, bundle_dir: Path) -> None:
    (tmp_path / "bundle").symlink_to(bundle_dir)
    result = campaign(tmp_path, workers=4, sessions=10, warm_s=2, outage_s=1.5, after_s=1.5, n_items=50)
    failed = [c for c in result.criteria if not c.passed]
    assert len(result.criteria) == 4 and not failed, failed
    sessions = result.figures["sessions_before_kill"]
    assert sessions["sessions"] >= 10 and sessions["acknowledged_events"] > 0 and sessions["lost_or_wrong"] == 0
    responses = result.figures["responses"]
    assert any(k.startswith("outage append 503 session_store_unavailable") for k in responses), responses
    assert result.figures["timeline_s"]["time_to_recover_s"] < 10
