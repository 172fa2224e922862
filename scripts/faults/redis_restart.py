"""Fault: Redis killed (SIGKILL) and restarted under load, sessions persisted by AOF.

    python -m scripts.faults.redis_restart --warm 8 --outage 4 --after 5 --workers 12

A throw-away `redis-server --appendonly yes --appendfsync always` (its own dir and port) and the service as
a real process (`SEQREC_REDIS_URL`, `SEQREC_LLM_BACKEND=none`). Workers load it with a mix of session
writes (POST /v1/sessions/{id}/events to many distinct sessions, each owned by one worker so its
acknowledged content is known), recommendations with inline history + session_id (their events are
appended), session-only recommendations and session reads, plus plain inline recommendations. Mid-load
Redis is SIGKILLed, the load goes on for `--outage` seconds, Redis restarts on the same dir and port.

Criteria: (1) no 5xx other than the documented 503 `session_store_unavailable`, and that only for requests
that need the store (session writes, reads, session-only recommendations) between the kill and recovery;
no transport errors; (2) inline-history requests sent during the outage answer 200, those with a session_id
with `degraded: true`; (3) after the restart every session holds exactly the events acknowledged (200)
before the kill, read back with GET /v1/sessions/{id} (a write that failed may or may not have landed:
its events may follow, nothing else); (4) the service recovers without restart: /readyz `degraded` empty
again within 10 s and every request sent from 1 s after that answers 200 (time to recover reported; store
requests answered 503 after /readyz was clean are counted).
"""

from __future__ import annotations

import argparse
import asyncio
import random
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from scripts.faults.common import (
    FaultResult,
    Histories,
    Redis,
    Sample,
    catalogue_ids,
    error_code,
    fixture_bundle,
    service,
    setup_logging,
    timed,
)

STORE_KINDS = {"append", "session_only", "get_session"}  # need Redis; 503 is their documented outage answer
# Requests in flight when /readyz turns clean may still see the outage; from 1 s after it every answer must be 200.
# (Before RedisStore dropped its idle pooled connections on a connection error, each connection that sat idle
# through the outage failed its next command once, up to 4.5 s after /readyz was clean: 0-6 late 503s a run.)
GRACE_S = 1.0
MAX_LEN = 200  # SEQREC_SESSION_MAX_LEN default: the store keeps the newest 200 events


@dataclass
class Ledger:
    """What the service acknowledged for each session: `acked` its content after the last 200; `unsure` the
    events of a failed write that may have landed anyway (the session is not written again after that)."""

    acked: dict[str, list[str]] = field(default_factory=dict)
    unsure: dict[str, list[str]] = field(default_factory=dict)

    def ok(self, sid: str, content: list[str]) -> None:
        self.acked[sid] = content[-MAX_LEN:]

    def failed(self, sid: str, events: list[str]) -> None:
        self.unsure[sid] = events


@dataclass
class Timeline:
    start: float = 0.0
    kill: float = float("inf")  # seconds since start
    restart: float = float("inf")
    recovered: float = float("inf")


async def worker(w: int, client: httpx.AsyncClient, hist: Histories, ledger: Ledger, tl: Timeline,
                 samples: list[Sample], stop: asyncio.Event, sessions: int) -> None:  # fmt: skip
    rng = random.Random(w)
    # sessions written before the kill are never touched after it; a session whose write failed is replaced
    slots = {phase: [f"{phase}-{w}-{j}" for j in range(sessions)] for phase in ("pre", "post")}
    replaced = 0
    while not stop.is_set():
        phase = "pre" if time.perf_counter() - tl.start < tl.kill else "post"
        j = rng.randrange(sessions)
        sid = slots[phase][j]
        if sid in ledger.unsure:
            replaced += 1
            sid = slots[phase][j] = f"{phase}-{w}-{j}r{replaced}"
        events = hist.one(rng.randint(1, 4))
        op = rng.random()
        if op < 0.35:
            s = await timed(client, "append", tl.start, "POST", f"/v1/sessions/{sid}/events", {"events": events})
            if s.status == 200 and s.body:
                ledger.ok(sid, s.body["history"])
            else:
                ledger.failed(sid, events)
        elif op < 0.6:
            body = {"session_id": sid, "history": events, "k": 10}
            s = await timed(client, "session_inline", tl.start, "POST", "/v1/recommend", body)
            if s.status == 200 and s.body and not s.body["degraded"]:
                ledger.ok(sid, ledger.acked.get(sid, []) + events)
            else:  # degraded: the append failed, yet it may have reached Redis before the answer was lost
                ledger.failed(sid, events)
        elif op < 0.75 and ledger.acked.get(sid):
            s = await timed(client, "session_only", tl.start, "POST", "/v1/recommend", {"session_id": sid, "k": 10})
        elif op < 0.85 and ledger.acked.get(sid):
            s = await timed(client, "get_session", tl.start, "GET", f"/v1/sessions/{sid}")
        else:
            s = await timed(client, "inline", tl.start, "POST", "/v1/recommend", {"history": hist.one(), "k": 10})
        samples.append(s)


async def watch_recovery(client: httpx.AsyncClient, tl: Timeline, timeout_s: float) -> None:
    """Poll /readyz every 100 ms after the restart until `degraded` is empty."""
    deadline = time.perf_counter() + timeout_s
    while time.perf_counter() < deadline:
        try:
            r = await client.get("/readyz")
            if r.status_code == 200 and not r.json().get("degraded"):
                tl.recovered = time.perf_counter() - tl.start
                return
        except httpx.HTTPError:
            pass
        await asyncio.sleep(0.1)


async def load(url: str, redis: Redis, hist: Histories, *, workers: int, sessions: int, warm_s: float,
               outage_s: float, after_s: float) -> tuple[list[Sample], Ledger, Timeline, dict[str, Any]]:  # fmt: skip
    ledger, tl, samples = Ledger(), Timeline(), []
    stop = asyncio.Event()
    limits = httpx.Limits(max_connections=workers + 2)
    async with httpx.AsyncClient(base_url=url, timeout=10, limits=limits) as client:
        tl.start = time.perf_counter()
        tasks = [asyncio.create_task(worker(w, client, hist, ledger, tl, samples, stop, sessions)) for w in range(workers)]
        await asyncio.sleep(warm_s)
        tl.kill = time.perf_counter() - tl.start
        redis.kill()
        await asyncio.sleep(outage_s)
        tl.restart = time.perf_counter() - tl.start  # before the start: a request after it may find Redis up
        await asyncio.to_thread(redis.start)
        await watch_recovery(client, tl, timeout_s=30)
        await asyncio.sleep(after_s)
        stop.set()
        await asyncio.gather(*tasks)
        readback = {}
        for sid in sorted(set(ledger.acked) | set(ledger.unsure)):
            if sid.startswith("pre-"):
                r = await client.get(f"/v1/sessions/{sid}")
                readback[sid] = r.json()["history"] if r.status_code == 200 else ([] if r.status_code == 404 else None)
    return samples, ledger, tl, readback


def judge(result: FaultResult, samples: list[Sample], ledger: Ledger, tl: Timeline, readback: dict[str, Any]) -> None:
    def phase(s: Sample) -> str:
        if s.t < tl.kill:
            return "before"
        return "outage" if s.t0 < tl.recovered else "after"

    counts = Counter(f"{phase(s)} {s.kind} {s.status}{' ' + c if (c := error_code(s)) else ''}" for s in samples)
    result.figures["responses"] = dict(sorted(counts.items()))
    result.figures["requests"] = len(samples)

    documented = [s for s in samples if s.status == 503 and error_code(s) == "session_store_unavailable"
                  and s.kind in STORE_KINDS and s.t >= tl.kill]  # fmt: skip
    bad = [s for s in samples if (s.status == 0 or s.status >= 500) and s not in documented]
    late = [s for s in documented if s.t0 >= tl.recovered]
    result.figures["documented_503"] = len(documented)
    result.figures["documented_503_after_readyz_clean"] = [round(s.t0 - tl.recovered, 3) for s in late]
    if late:
        result.notes.append(
            f"{len(late)} store requests got 503 session_store_unavailable after /readyz was clean again (up to "
            f"{max(s.t0 - tl.recovered for s in late):.2f} s after)"
        )
    result.check(
        "no 5xx or transport error other than 503 session_store_unavailable on store-only requests after the kill",
        not bad, f"{len(documented)} documented 503s ({len(late)} of them sent after /readyz was clean again); "
        f"{len(bad)} others" + (f", e.g. {bad[0]}" if bad else ""),
    )  # fmt: skip
    during = [s for s in samples if s.kind in {"inline", "session_inline"} and tl.kill <= s.t0 and s.t < tl.restart]
    not_ok = [s for s in during if s.status != 200 or (s.kind == "session_inline" and not (s.body or {}).get("degraded"))]
    result.check(
        "inline-history requests during the outage answer 200 (with a session_id: degraded true)",
        bool(during) and not not_ok,
        f"{len(during)} sent and answered while Redis was down, {len(not_ok)} not 200/degraded"
        + (f", e.g. {not_ok[0]}" if not_ok else ""),
    )
    exact = extra = wrong = 0
    mismatches = []
    for sid, stored in readback.items():
        acked = ledger.acked.get(sid, [])
        maybe = (acked + ledger.unsure[sid])[-MAX_LEN:] if sid in ledger.unsure else None
        if stored == acked:
            exact += 1
        elif maybe is not None and stored == maybe:
            extra += 1
        else:
            wrong += 1
            mismatches.append({"session": sid, "acked": acked, "stored": stored})
    events = sum(len(v) for k, v in ledger.acked.items() if k.startswith("pre-"))
    result.figures["sessions_before_kill"] = {"sessions": len(readback), "acknowledged_events": events,
                                              "exact": exact, "with_unacknowledged_write_landed": extra,
                                              "lost_or_wrong": wrong}  # fmt: skip
    result.check(
        "after the restart every session holds exactly its acknowledged events (GET /v1/sessions/{id})",
        bool(readback) and wrong == 0,
        f"{len(readback)} sessions / {events} acknowledged events before the kill: {exact} exact, {extra} also "
        f"hold a failed write's events, {wrong} lost or wrong" + (f", e.g. {mismatches[0]}" if mismatches else ""),
    )
    after = [s for s in samples if s.t0 >= tl.recovered + GRACE_S]
    after_bad = [s for s in after if s.status != 200 or (s.body or {}).get("degraded")]
    recover_s = tl.recovered - tl.restart
    result.figures["timeline_s"] = {"kill": round(tl.kill, 2), "restart": round(tl.restart, 2),
                                    "readyz_clean": round(tl.recovered, 2), "time_to_recover_s": round(recover_s, 2)}  # fmt: skip
    result.check(
        "recovers without a service restart: /readyz degraded empty within 10 s, every request sent from "
        f"{GRACE_S:g} s after that 200 and not degraded",
        recover_s < 10 and bool(after) and not after_bad,
        f"/readyz clean {recover_s:.2f} s after Redis restarted; {len(after)} requests after, {len(after_bad)} not 200"
        + (f", e.g. {after_bad[0]}" if after_bad else ""),
    )


def campaign(workdir: Path, *, appendfsync: str = "always", workers: int = 12, sessions: int = 40,
             warm_s: float = 8, outage_s: float = 4, after_s: float = 5, n_items: int = 500,
             command: str = "") -> FaultResult:  # fmt: skip
    result = FaultResult("redis_restart", command)
    bundle = fixture_bundle(workdir / "bundle", n_items=n_items)
    hist = Histories(catalogue_ids(bundle), seed=1)
    redis = Redis(workdir / "redis", appendfsync=appendfsync).start()
    result.figures["setup"] = {"appendfsync": appendfsync, "workers": workers, "sessions_per_worker_and_phase": sessions,
                               "warm_s": warm_s, "outage_s": outage_s, "after_s": after_s, "n_items": n_items}  # fmt: skip
    try:
        env = {"SEQREC_REDIS_URL": redis.url, "SEQREC_LLM_BACKEND": "none"}
        with service(bundle, env) as svc:
            samples, ledger, tl, readback = asyncio.run(load(
                svc.url, redis, hist, workers=workers, sessions=sessions, warm_s=warm_s, outage_s=outage_s,
                after_s=after_s))  # fmt: skip
            judge(result, samples, ledger, tl, readback)
            if svc.proc.poll() is not None:
                result.check("the service process stayed up", False, f"exit code {svc.proc.returncode}")
    finally:
        redis.stop()
    return result


def add_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--appendfsync", default="always", choices=["always", "everysec"])
    p.add_argument("--workers", type=int, default=12)
    p.add_argument("--sessions", type=int, default=40, help="sessions per worker, before and after the kill")
    p.add_argument("--warm", type=float, default=8, help="seconds of load before the kill")
    p.add_argument("--outage", type=float, default=4, help="seconds Redis stays down")
    p.add_argument("--after", type=float, default=5, help="seconds of load after recovery")


def run(args: argparse.Namespace, command: str) -> FaultResult:
    with tempfile.TemporaryDirectory(prefix="fault-redis-") as tmp:
        return campaign(Path(tmp), appendfsync=args.appendfsync, workers=args.workers, sessions=args.sessions,
                        warm_s=args.warm, outage_s=args.outage, after_s=args.after, command=command)  # fmt: skip


if __name__ == "__main__":
    setup_logging()
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    add_args(parser)
    r = run(parser.parse_args(), "python -m scripts.faults.redis_restart " + " ".join(sys.argv[1:]))
    print(r.as_dict())
    sys.exit(0 if r.passed else 1)
