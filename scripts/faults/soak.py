"""Fault: a soak. One service process under steady load for `--duration` seconds; its RSS and open file
descriptors must stay flat.

    python -m scripts.faults.soak --duration 600            # the campaign's 10-minute soak (a quiet machine)
    python -m scripts.faults.soak --duration 60              # a dry run

Load: wrk through scripts/loadtest.py `run_wrk` (one body per line, round-robin), bodies from real test users
when a real bundle is there (`--bundle`, default bundles/current; `--preset` names its dataset), else a fixture bundle
(`build_bundle(..., n_items=2000)`) and random histories of its catalogue ids; every other body names one of
`--sessions` session ids, so sessions in Redis (a throw-away AOF redis-server) grow during the run. After a
`--warmup` of the same load, /proc/<pid>/status VmRSS and /proc/<pid>/fd are sampled every `--every` seconds.

Criteria: RSS growth (last sample vs the first after the warm-up) < 5 %; open fds flat (counted idle, 2 s
after the warm-up's and after the run's load stopped: at most 2 more, connections in the Redis pool apart,
which keeps what concurrent demand opened: at most one per concurrent request); wrk reports no errors.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from scripts.faults.common import (
    REPO,
    FaultResult,
    Histories,
    Redis,
    catalogue_ids,
    fd_kinds,
    fixture_bundle,
    open_fds,
    rss_kib,
    service,
    setup_logging,
    write_bodies,
)


def sample(pid: int, every_s: float, stop: threading.Event, out: list[dict[str, Any]], t0: float) -> None:
    while not stop.is_set():
        try:
            out.append({"t_s": round(time.perf_counter() - t0, 1), "rss_kib": rss_kib(pid), "fds": open_fds(pid)})
        except (OSError, RuntimeError):
            return
        stop.wait(every_s)


def bodies_for(args: argparse.Namespace, workdir: Path) -> tuple[Path, Path, str]:
    """(bundle, bodies file, where the histories came from)."""
    real = Path(args.bundle) if args.bundle else REPO / "bundles" / "current"
    if (real / "manifest.json").exists():
        from scripts.loadtest import write_bodies as real_bodies

        bundle = real.resolve()
        path = workdir / "bodies.jsonl"
        real_bodies(args.preset, path, 10, False, 200, bundle)
        lines = path.read_text().splitlines()  # name sessions on every other body, as for the fixture bundle
        with path.open("w") as f:
            for i, line in enumerate(lines):
                body = json.loads(line)
                if i % 2:
                    body["session_id"] = f"soak-{i % args.sessions}"
                f.write(json.dumps(body, separators=(",", ":")) + "\n")
        return bundle, path, f"real test users of {args.preset} ({len(lines)} bodies)"
    bundle = fixture_bundle(workdir / "bundle", n_items=2000)
    path = write_bodies(workdir / "bodies.jsonl", Histories(catalogue_ids(bundle), seed=5), args.bodies, sessions=args.sessions)
    return bundle, path, f"fixture bundle (2000 items), {args.bodies} random histories"


def campaign(workdir: Path, args: argparse.Namespace, command: str = "") -> FaultResult:
    from scripts.loadtest import run_wrk

    result = FaultResult("soak", command)
    if args.duration < 600:
        result.notes.append(f"DRY RUN: {args.duration:g} s, not the 10-minute soak the criterion is stated for")
    bundle, bodies, source = bodies_for(args, workdir)
    redis = Redis(workdir / "redis", appendfsync="everysec").start()
    samples: list[dict[str, Any]] = []
    try:
        env = {"SEQREC_REDIS_URL": redis.url, "SEQREC_LLM_BACKEND": "none"}
        with service(bundle, env) as svc:
            run_wrk(svc.url, bodies, args.concurrency, args.warmup)
            time.sleep(2)  # fds counted idle (no load connections open), after the warm-up grew the Redis pool
            idle_fds_start = open_fds(svc.pid)
            kinds_start = fd_kinds(svc.pid, redis.port)
            keys_start = int(redis.cli("dbsize"))
            stop = threading.Event()
            t0 = time.perf_counter()
            sampler = threading.Thread(target=sample, args=(svc.pid, args.every, stop, samples, t0), daemon=True)
            sampler.start()
            load = run_wrk(svc.url, bodies, args.concurrency, int(args.duration))
            stop.set()
            sampler.join()
            samples.append({"t_s": round(time.perf_counter() - t0, 1), "rss_kib": rss_kib(svc.pid), "fds": open_fds(svc.pid)})
            time.sleep(2)
            idle_fds_end = open_fds(svc.pid)
            kinds_end = fd_kinds(svc.pid, redis.port)
            keys_end = int(redis.cli("dbsize"))
    finally:
        redis.stop()
    first, last = samples[0], samples[-1]
    growth = 100 * (last["rss_kib"] - first["rss_kib"]) / first["rss_kib"]
    result.figures |= {
        "setup": {"duration_s": args.duration, "warmup_s": args.warmup, "concurrency": args.concurrency,
                  "every_s": args.every, "bodies": source, "session_ids": args.sessions},
        "rss_mib": {"start": round(first["rss_kib"] / 1024, 1), "end": round(last["rss_kib"] / 1024, 1),
                    "max": round(max(s["rss_kib"] for s in samples) / 1024, 1), "growth_pct": round(growth, 2)},
        "fds": {"idle_start": idle_fds_start, "idle_end": idle_fds_end, "idle_start_by_kind": kinds_start,
                "idle_end_by_kind": kinds_end, "under_load_first": first["fds"],
                "under_load_last": last["fds"], "under_load_max": max(s["fds"] for s in samples)},
        "redis_keys": {"start": keys_start, "end": keys_end},
        "wrk": load,
        "samples": samples,
    }  # fmt: skip
    result.check("RSS growth < 5 % (last sample vs first after the warm-up)", growth < 5,
                 f"{first['rss_kib'] / 1024:.1f} -> {last['rss_kib'] / 1024:.1f} MiB ({growth:+.2f} %), "
                 f"max {result.figures['rss_mib']['max']} MiB over {len(samples)} samples")
    grown = {k: kinds_end[k] - kinds_start[k] for k in kinds_start}
    result.check(
        "open fds flat: idle after the run - idle after the warm-up <= 2, Redis pool connections apart (the pool "
        f"keeps what concurrent demand opened, at most one per concurrent request: <= {args.concurrency})",
        grown["other"] + grown["tcp_other"] <= 2 and kinds_end["redis"] <= args.concurrency,
        f"idle {idle_fds_start} -> {idle_fds_end} ({kinds_start} -> {kinds_end}); under load {first['fds']} -> "
        f"{last['fds']} (max {result.figures['fds']['under_load_max']}: wrk's connections and Redis's pool)",
    )
    result.check("no errors", load["errors"] == 0 and load["requests"] > 0,
                 f"{load['requests']} requests ({load['rps']:.0f}/s), {load['errors']} errors, p99 {load['p99_ms']:.1f} ms")
    return result


def add_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--duration", type=float, default=600, help="seconds of measured load (the criterion: 600)")
    p.add_argument("--warmup", type=int, default=20, help="seconds of load before the first sample")
    p.add_argument("--every", type=float, default=5, help="sampling period, seconds")
    p.add_argument("--concurrency", type=int, default=16)
    p.add_argument("--sessions", type=int, default=5000, help="distinct session ids in the bodies")
    p.add_argument("--bodies", type=int, default=20000, help="random bodies (fixture bundle)")
    p.add_argument("--bundle", default=None,
                   help="a real bundle; unset: bundles/current when it exists, else a fixture bundle")
    p.add_argument("--preset", default="ml-100k", help="the dataset of --bundle (its test users' histories)")


def run(args: argparse.Namespace, command: str) -> FaultResult:
    with tempfile.TemporaryDirectory(prefix="fault-soak-") as tmp:
        return campaign(Path(tmp), args, command)


if __name__ == "__main__":
    setup_logging()
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    add_args(parser)
    r = run(parser.parse_args(), "python -m scripts.faults.soak " + " ".join(sys.argv[1:]))
    d = r.as_dict()
    d["figures"].pop("samples", None)
    print(json.dumps(d, indent=1))
    sys.exit(0 if r.passed else 1)
